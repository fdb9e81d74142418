"""The ``skocl`` command: demo, train, evaluate, predict.

Exit codes: 0 success, 1 bad data or model (the message says which file, line and
column), 2 bad command line (including a ``--resume`` that would not continue the run
that wrote the checkpoint).

This module imports only the standard library at the top, so that ``skocl --help``
answers without loading torch; each command imports what it needs.
"""

from __future__ import annotations

import argparse
import ast
import csv
import os
import sys
import time

from ._cli_targets import check_model_targets as _check_model_targets
from ._cli_targets import prediction_header as _prediction_header
from ._cli_targets import prediction_rows as _prediction_rows
from ._cli_targets import right as _right
from ._cli_targets import subset_accuracy as _subset_accuracy
from ._cli_targets import targets as _targets

EXIT_OK, EXIT_DATA, EXIT_USAGE = 0, 1, 2


class _UsageError(Exception):
    pass


class _NoData(ValueError):
    pass


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _parse_param(text: str) -> tuple[str, object]:
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise _UsageError(f"--param takes NAME=VALUE, got {text!r}")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw  # a bare string such as relu or cpu
    return name.strip(), value


def _add_data_args(p: argparse.ArgumentParser, target_required: bool = True) -> None:
    p.add_argument("data", nargs="+", help="CSV (.csv, .csv.gz) or Parquet files, or a glob")
    p.add_argument(
        "--target",
        action="append",
        required=target_required,
        metavar="NAME",
        help="name of the label column; give it again for several targets, one task each "
        "(--target a --target b): a missing label then teaches its task nothing, and a "
        "row with no label is a bad row",
    )
    p.add_argument("--features", help="comma-separated feature columns (default: all others)")
    p.add_argument(
        "--chunksize", type=_positive_int, default=10_000, help="rows per chunk (10000)"
    )
    p.add_argument(
        "--on-bad-rows",
        choices=("raise", "skip"),
        default="raise",
        help="stop at the first bad row (default) or skip bad rows and report them",
    )


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an OnlineFineTuneClassifier parameter, e.g. -p trunk_lr=0.01 "
        "-p hidden_layer_sizes='(64,32)' (repeatable)",
    )
    p.add_argument(
        "--no-scale",
        action="store_true",
        help="do not standardise features with a StandardScaler learned online",
    )
    p.add_argument(
        "--classes",
        action="append",
        help="comma-separated label set (default: grows as labels appear); with several "
        "--target, give it once per target, in the same order",
    )
    p.add_argument("--seed", type=int, default=None, help="random_state (0)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skocl", description="Online fine-tuning of PyTorch classifiers."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="learn a drifting stream of generated data, against peers")
    p.add_argument("--png", default="skocl-demo.png", help="where to save the learning curves")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rows", type=_positive_int, default=12_000, help="rows in the stream (12000)")

    p = sub.add_parser(
        "train",
        help="learn from files chunk by chunk with partial_fit (one or several targets)",
    )
    _add_data_args(p)
    _add_model_args(p)
    p.add_argument("--model", default="model.skocl", help="model file to write (model.skocl)")
    p.add_argument(
        "--warm-start",
        action="store_true",
        help="continue learning the model in --model from these files, with its own "
        "parameters, scaler, classes and feature columns, and save it back",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from its checkpoint in --model (the same files, "
        "chunk size and parameters)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        default=10,
        help="chunks between checkpoints (10)",
    )

    p = sub.add_parser("evaluate", help="prequential (test-then-train) evaluation")
    _add_data_args(p)
    _add_model_args(p)
    p.add_argument("--model", help="start from this model file (default: a new model)")
    p.add_argument(
        "--metric",
        action="append",
        help="sklearn scorer name (repeatable; default accuracy); with several --target "
        "only accuracy, the subset accuracy: a row is right when every label it has is "
        "predicted",
    )
    p.add_argument("--no-learn", action="store_true", help="score only, do not learn")
    p.add_argument("--output", help="write the per-chunk scores to this CSV")
    p.add_argument(
        "--save",
        metavar="PATH",
        help="save the model after the run (what it learned) to PATH; may be --model",
    )

    p = sub.add_parser(
        "predict",
        help="predict labels for files, CSV out: a column 'prediction', or "
        "'prediction_<target>' for each target of a model of several",
    )
    p.add_argument("model", help="a model file written by skocl train")
    p.add_argument("data", nargs="+", help="CSV or Parquet files, or a glob")
    p.add_argument("--chunksize", type=_positive_int, default=10_000)
    p.add_argument("--output", "-o", help="CSV file to write (default: standard output)")
    p.add_argument(
        "--proba",
        action="store_true",
        help="add a probability column per class, 'proba_<class>' (of several targets, "
        "'proba_<target>_<class>')",
    )
    return parser


# ------------------------------------------------------------------------ helpers


def _seed(args) -> int:
    return 0 if args.seed is None else args.seed


def _new_model(args):
    from sklearn.preprocessing import StandardScaler

    from ._classifier import OnlineFineTuneClassifier
    from .pipeline import make_stream_pipeline

    params = dict(_parse_param(t) for t in args.param)
    params.setdefault("random_state", _seed(args))
    clf = OnlineFineTuneClassifier()
    try:
        clf.set_params(**params)
        clf._validate_params()  # bad values are a command-line error, before any data
    except ValueError as exc:
        raise _UsageError(str(exc)) from exc
    return clf if args.no_scale else make_stream_pipeline(StandardScaler(), clf)


def _model_columns(path, model) -> list[str] | None:
    """The feature columns a model file was trained on, by name."""
    from ._persist import read_meta

    if getattr(model, "feature_names_in_", None) is not None:
        return [str(name) for name in model.feature_names_in_]
    return read_meta(path)["extra"].get("features")


def _stream(args, target, features=None):
    from .stream import open_stream

    if features is None and getattr(args, "features", None):
        features = [name.strip() for name in args.features.split(",")]
    sources = args.data if len(args.data) > 1 else args.data[0]
    return open_stream(
        sources,
        target=target,
        chunksize=args.chunksize,
        features=features,
        on_bad_rows=getattr(args, "on_bad_rows", "raise"),
    )


def _one_or_several(args) -> None:
    """An option given once holds its value, as before several were allowed (so that
    model files and run records of one target stay as they were); given several
    times, the list."""
    for name in ("target", "classes"):
        values = getattr(args, name, None)
        if isinstance(values, list) and len(values) == 1:
            setattr(args, name, values[0])


def _classes(args):
    """The label set of ``--classes``; of several targets, a list of them, one per
    ``--target``."""
    if not args.classes:
        return None
    given = args.classes if isinstance(args.classes, list) else [args.classes]
    n_targets = len(_targets(args))
    if len(given) != n_targets:
        raise _UsageError(
            f"{len(given)} --classes for {n_targets} --target: give --classes once per "
            "--target, in the same order"
        )
    sets = [[_literal(c) for c in text.split(",")] for text in given]
    return sets if n_targets > 1 else sets[0]


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _no_data(args, chunks) -> _NoData:
    report = getattr(chunks, "report", None)
    skipped = f" ({report.count} bad rows skipped)" if report is not None and report.count else ""
    return _NoData(f"no data rows in {', '.join(args.data)}{skipped}")


def _run_record(args) -> dict:
    """What a ``--resume`` must find unchanged: the files, the reading, the parameters."""
    from ._checkpoint import describe_files

    return {
        "files": describe_files(args.data),
        "chunksize": args.chunksize,
        "target": args.target,
        "features": args.features,
        "on_bad_rows": args.on_bad_rows,
        "params": {name: repr(value) for name, value in map(_parse_param, args.param)},
        "seed": _seed(args),
        "scale": not args.no_scale,
        "classes": args.classes,
    }


def _check_no_model_options(args, why: str) -> None:
    """Refuse the options that shape a new model when a saved one is used as it is."""
    given = [
        flag
        for flag, value in (
            ("-p/--param", args.param),
            ("--no-scale", args.no_scale),
            ("--seed", args.seed is not None),
            ("--classes", args.classes),
        )
        if value
    ]
    if given:
        raise _UsageError(f"{why}; {', '.join(given)} cannot change them")


def _finished_elsewhere(args, checkpoint) -> bool:
    """Whether ``--warm-start --resume`` finds a finished model of another run: there is
    nothing of this run to resume, so the warm start begins."""
    from ._checkpoint import CheckpointMismatch
    from ._persist import read_meta

    if not args.warm_start:
        return False
    try:
        checkpoint.read_position()
    except CheckpointMismatch:
        return read_meta(checkpoint.path)["extra"].get("complete", True)
    return False


def _check_columns_arg(args) -> None:
    targets = _targets(args)
    twice = sorted({name for name in targets if targets.count(name) > 1})
    if twice:
        raise _UsageError(f"--target names {', '.join(twice)} twice")
    if not args.features:
        return
    names = [name.strip() for name in args.features.split(",")]
    if "" in names:
        raise _UsageError(f"--features {args.features!r} holds an empty column name")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise _UsageError(f"--features names {', '.join(twice)} twice")
    for target in targets:
        if target in names:
            raise _UsageError(f"--features names the target {target!r}")


def _check_writable(path, option: str) -> None:
    """A file the command will write must have an existing folder, checked before any
    data is read."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise _UsageError(f"{option} {path} is a directory, not a file name")
    if not os.path.isdir(folder):
        raise _UsageError(f"{option} {path}: the folder {folder} does not exist")


def _warm_start_model(args):
    """The model to continue, and its feature columns (for the reader, by name)."""
    from ._persist import load, read_meta

    if not os.path.isfile(args.model):
        raise FileNotFoundError(f"{args.model}: no such model file to continue (--warm-start)")
    extra = read_meta(args.model)["extra"]
    if "chunks_done" in extra and not extra.get("complete", True):
        raise _UsageError(
            f"{args.model} holds an interrupted run ({extra['chunks_done']} chunks "
            "learned): finish it with --resume before continuing it with new files"
        )
    model = load(args.model)
    _check_model_targets(args.model, model, args)
    features = _model_columns(args.model, model)
    if features is None:
        raise ValueError(
            f"{args.model} holds no feature column names, so the new files' columns "
            "cannot be matched to it: train it with skocl train, or from a DataFrame"
        )
    if args.features:
        wanted = [name.strip() for name in args.features.split(",")]
        if wanted != features:
            raise _UsageError(
                f"--features {args.features} differs from the model's columns "
                f"{','.join(features)}: leave --features out with --warm-start"
            )
    return model, features


def _model_input(model, chunks, X):
    """``X`` for the model and whether its columns are in the model's order (see
    ``stream._model_input``)."""
    from .stream import _is_fitted
    from .stream import _model_input as model_input

    return model_input(model, chunks, X, _is_fitted(model))


def _report_bad_rows(chunks) -> None:
    report = getattr(chunks, "report", None)
    if report is not None and report.count:
        print(f"skipped {report.count} bad row(s):", file=sys.stderr)
        for source, line, column, reason in report.rows[:20]:
            where = f"{source}, line {line}" + (f", column {column!r}" if column else "")
            print(f"  {where}: {reason}", file=sys.stderr)
        if report.count > 20:
            print(f"  ... and {report.count - 20} more", file=sys.stderr)


def _save(model, path, extra: dict) -> None:
    from ._checkpoint import Checkpoint

    Checkpoint(path).write(model, extra)


# ----------------------------------------------------------------------- commands


def _cmd_demo(args) -> int:
    from .demo import run

    run(n_samples=args.rows, random_state=args.seed, png=args.png)
    return EXIT_OK


def _cmd_train(args) -> int:
    """Learn the files chunk by chunk, scoring each chunk before it is learned."""
    from ._checkpoint import Checkpoint
    from ._progress import progress_bar
    from .stream import _columns_in_order, _is_fitted

    if args.warm_start:
        _check_no_model_options(
            args,
            "--warm-start continues the model in --model with its own parameters "
            "(train a new model to change them)",
        )
    _check_columns_arg(args)
    classes = _classes(args)
    _check_writable(args.model, "--model")
    # Saved with each checkpoint: predict reads the columns, --resume the run.
    columns: dict = {"target": args.target}
    checkpoint = Checkpoint(
        args.model, every=args.checkpoint_every, run=_run_record(args), extra=columns
    )
    # The tally of the prequential accuracy (each chunk predicted before it is learned);
    # of several targets, the subset accuracy (see _cli_targets.right).
    tally = {"chunks_done": 0, "rows_seen": 0, "scored": 0, "correct": 0}
    features = None
    if args.resume and checkpoint.exists() and not _finished_elsewhere(args, checkpoint):
        model, position = checkpoint.resume()
        tally.update({k: position[k] for k in tally if k in position})
        if position.get("complete"):
            print(
                f"nothing to resume: {args.model} has learned all {tally['chunks_done']} "
                "chunks of this run",
                file=sys.stderr,
            )
            return EXIT_OK
        features = position.get("features")
        if features is not None:
            columns["features"] = features
    elif args.warm_start:
        model, features = _warm_start_model(args)
        columns["features"] = features
    else:
        model = _new_model(args)
        if os.path.isfile(args.model):
            print(
                f"note: {args.model} exists and will be replaced by a new model "
                "(--warm-start continues it instead)",
                file=sys.stderr,
            )
    chunks = _stream(args, args.target, features)
    start, read, seconds = tally["chunks_done"], 0, 0.0
    with progress_bar(0 if args.quiet else 1) as bar:
        for i, chunk in enumerate(chunks):
            read += 1
            if columns.get("features") is None:
                columns["features"] = list(chunks.features)
            if i < start:
                continue
            (X, in_order), y = _model_input(model, chunks, chunk.X), chunk.y
            t0 = time.perf_counter()
            with _columns_in_order(in_order):
                if _is_fitted(model):
                    correct, scored = _right(model.predict(X), y)
                    tally["correct"] += correct
                    tally["scored"] += scored
                    model.partial_fit(X, y)
                elif classes is not None:
                    model.partial_fit(X, y, classes=classes)
                else:
                    model.partial_fit(X, y)
            seconds += time.perf_counter() - t0
            tally["rows_seen"] += len(y)
            tally["chunks_done"] = i + 1
            accuracy = tally["correct"] / tally["scored"] if tally["scored"] else None
            bar.update(len(y), accuracy and {"accuracy": f"{accuracy:.4f}"})
            if checkpoint.due(i + 1):
                checkpoint.write(model, {**tally, "complete": False})
    _report_bad_rows(chunks)
    if not read:
        raise _no_data(args, chunks)
    checkpoint.write(model, {**tally, "complete": True})
    rows = tally["rows_seen"]
    learned = tally["chunks_done"] - start
    print(
        f"trained on {rows} rows in {tally['chunks_done']} chunks "
        f"({learned} learned now, {rows / max(seconds, 1e-9):,.0f} rows/s); "
        f"model saved to {args.model}",
        file=sys.stderr,
    )
    if tally["scored"]:
        several = isinstance(args.target, list)
        print(
            f"prequential {'subset ' if several else ''}accuracy: "
            f"{tally['correct'] / tally['scored']:.4f} over {tally['scored']} rows (each "
            "chunk predicted before it was learned"
            f"{'; a row is right when every label it has is predicted' if several else ''})",
            file=sys.stderr,
        )
    else:
        print("prequential accuracy: none (no chunk came after the first)", file=sys.stderr)
    return EXIT_OK


def _cmd_evaluate(args) -> int:
    from ._persist import load
    from .stream import prequential

    metrics = tuple(args.metric or ["accuracy"])
    _check_metrics(metrics)
    _check_columns_arg(args)
    scorers = metrics
    if isinstance(args.target, list):
        if metrics != ("accuracy",):
            raise _UsageError(
                "with several --target, --metric can only be accuracy: the subset "
                "accuracy, a row right when every label it has is predicted"
            )
        scorers = {"accuracy": _subset_accuracy}
    if args.no_learn and args.save:
        raise _UsageError("--save with --no-learn would save the model unchanged")
    for path, option in ((args.save, "--save"), (args.output, "--output")):
        if path:
            _check_writable(path, option)
    features = None
    if args.model:
        _check_no_model_options(args, "--model evaluates the saved model as it is")
        model = load(args.model)
        _check_model_targets(args.model, model, args)
        features = _model_columns(args.model, model)
    else:
        model = _new_model(args)
    chunks = _stream(args, args.target, features)
    result = prequential(
        model,
        chunks,
        metrics=scorers,
        classes=_classes(args),
        learn=not args.no_learn,
        verbose=0 if args.quiet else 1,
    )
    _report_bad_rows(chunks)
    if not result.records:
        raise _no_data(args, chunks)
    if args.output:
        result.to_frame().to_csv(args.output, index=False)
    if args.save:
        _save(model, args.save, {"target": args.target, "features": list(chunks.features)})
    rows = sum(r["rows"] for r in result.records)
    print(f"prequential evaluation over {rows} rows in {len(result.records)} chunks:")
    for m in metrics:
        print(f"  {m}: {result.running(m):.4f}")
    if args.save:
        print(f"model saved to {args.save}", file=sys.stderr)
    return EXIT_OK


def _check_metrics(metrics) -> None:
    from sklearn.metrics import get_scorer_names

    unknown = [m for m in metrics if m not in get_scorer_names()]
    if unknown:
        raise _UsageError(
            f"unknown --metric {', '.join(unknown)}: use a scikit-learn scorer name such as "
            "accuracy, balanced_accuracy, f1_macro, neg_log_loss"
        )


def _cmd_predict(args) -> int:
    from ._persist import load
    from .stream import _columns_in_order

    model = load(args.model)
    features = _model_columns(args.model, model)
    if features is None:
        raise ValueError(
            f"{args.model} holds no feature column names: train it with skocl train, "
            "or from a DataFrame"
        )
    args.features = None
    if args.output:
        _check_writable(args.output, "--output")
    chunks = _stream(args, target=None, features=features)
    out = open(args.output, "w", newline="") if args.output else sys.stdout
    try:
        writer = csv.writer(out)
        writer.writerow(_prediction_header(args, model))
        for chunk in chunks:
            X, in_order = _model_input(model, chunks, chunk.X)
            with _columns_in_order(in_order):
                writer.writerows(_prediction_rows(model, X, args.proba))
        out.flush()
    except BrokenPipeError:
        # The reader of standard output stopped (``skocl predict ... | head``): that is
        # its choice, not an error. Point standard output at devnull so that the
        # interpreter's own flush at exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_OK
    finally:
        if out is not sys.stdout:
            out.close()
    return EXIT_OK


COMMANDS = {
    "demo": _cmd_demo,
    "train": _cmd_train,
    "evaluate": _cmd_evaluate,
    "predict": _cmd_predict,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``skocl`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _one_or_several(args)
    from ._checkpoint import CheckpointMismatch
    from .stream import StreamError

    try:
        return COMMANDS[args.command](args)
    except _UsageError as exc:
        parser.error(str(exc))  # exits with 2
    except CheckpointMismatch as exc:
        print(f"skocl {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (StreamError, ValueError, OSError, TypeError) as exc:
        print(f"skocl {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_DATA
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
