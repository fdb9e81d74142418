"""The ``skocl`` command: demo, train, evaluate, predict.

Exit codes: 0 success, 1 bad data or model (the message says which file, line and
column), 2 bad command line.
"""

from __future__ import annotations

import argparse
import ast
import csv
import sys
import time

EXIT_OK, EXIT_DATA, EXIT_USAGE = 0, 1, 2


class _UsageError(Exception):
    pass


def _parse_param(text: str) -> tuple[str, object]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise _UsageError(f"--param takes NAME=VALUE, got {text!r}")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw  # a bare string such as relu or cpu
    return name.strip(), value


def _add_data_args(p: argparse.ArgumentParser, target_required: bool = True) -> None:
    p.add_argument("data", nargs="+", help="CSV (.csv, .csv.gz) or Parquet files, or a glob")
    p.add_argument("--target", required=target_required, help="name of the label column")
    p.add_argument("--features", help="comma-separated feature columns (default: all others)")
    p.add_argument("--chunksize", type=int, default=10_000, help="rows per chunk (10000)")
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
    p.add_argument("--classes", help="comma-separated label set (default: grows as labels appear)")
    p.add_argument("--seed", type=int, default=0, help="random_state (0)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skocl", description="Online fine-tuning of PyTorch classifiers."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="learn a drifting stream of generated data, against peers")
    p.add_argument("--png", default="skocl-demo.png", help="where to save the learning curves")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rows", type=int, default=12_000, help="rows in the stream (12000)")

    p = sub.add_parser("train", help="learn from files chunk by chunk with partial_fit")
    _add_data_args(p)
    _add_model_args(p)
    p.add_argument("--model", default="model.skocl", help="model file to write (model.skocl)")
    p.add_argument(
        "--resume", action="store_true", help="continue an interrupted run from --model"
    )
    p.add_argument(
        "--checkpoint-every", type=int, default=10, help="chunks between checkpoints (10)"
    )

    p = sub.add_parser("evaluate", help="prequential (test-then-train) evaluation")
    _add_data_args(p)
    _add_model_args(p)
    p.add_argument("--model", help="start from this model file (default: a new model)")
    p.add_argument(
        "--metric",
        action="append",
        help="sklearn scorer name (repeatable; default accuracy)",
    )
    p.add_argument("--no-learn", action="store_true", help="score only, do not learn")
    p.add_argument("--output", help="write the per-chunk scores to this CSV")

    p = sub.add_parser("predict", help="predict labels for files, CSV out")
    p.add_argument("model", help="a model file written by skocl train")
    p.add_argument("data", nargs="+", help="CSV or Parquet files, or a glob")
    p.add_argument("--chunksize", type=int, default=10_000)
    p.add_argument("--output", "-o", help="CSV file to write (default: standard output)")
    p.add_argument("--proba", action="store_true", help="add a probability column per class")
    return parser


def _new_model(args):
    from sklearn.preprocessing import StandardScaler

    from ._classifier import OnlineFineTuneClassifier
    from .pipeline import make_stream_pipeline

    params = dict(_parse_param(t) for t in args.param)
    params.setdefault("random_state", args.seed)
    clf = OnlineFineTuneClassifier()
    try:
        clf.set_params(**params)
        clf._validate_params()  # bad values are a command-line error, before any data
    except ValueError as exc:
        raise _UsageError(str(exc)) from exc
    return clf if args.no_scale else make_stream_pipeline(StandardScaler(), clf)


def _stream(args, target, features=None):
    from .stream import open_stream

    features = features or (args.features.split(",") if getattr(args, "features", None) else None)
    sources = args.data if len(args.data) > 1 else args.data[0]
    return open_stream(
        sources,
        target=target,
        chunksize=args.chunksize,
        features=features,
        on_bad_rows=getattr(args, "on_bad_rows", "raise"),
    )


def _classes(args):
    return None if not args.classes else [_literal(c) for c in args.classes.split(",")]


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _cmd_demo(args) -> int:
    from .demo import run

    run(n_samples=args.rows, random_state=args.seed, png=args.png)
    return EXIT_OK


def _cmd_train(args) -> int:
    from ._checkpoint import Checkpoint
    from ._progress import progress_bar

    # Saved with each checkpoint, so that predict knows which columns to read.
    columns: dict = {"target": args.target}
    checkpoint = Checkpoint(args.model, every=args.checkpoint_every, extra=columns)
    start, rows = 0, 0
    if args.resume and checkpoint.exists():
        model, position = checkpoint.resume()
        start = position["chunks_done"]
        rows = position.get("rows_seen", 0)
        if "features" in position:
            columns["features"] = position["features"]
    else:
        model = _new_model(args)
    chunks = _stream(args, args.target)
    classes = _classes(args)
    done, seconds = start, 0.0
    with progress_bar(0 if args.quiet else 1) as bar:
        for i, chunk in enumerate(chunks):
            columns.setdefault("features", list(chunks.features))
            if i < start:
                continue
            t0 = time.perf_counter()
            if classes is not None and not _is_fitted(model):
                model.partial_fit(chunk.X, chunk.y, classes=classes)
            else:
                model.partial_fit(chunk.X, chunk.y)
            seconds += time.perf_counter() - t0
            rows += len(chunk.y)
            done = i + 1
            bar.update(len(chunk.y))
            if checkpoint.due(done):
                checkpoint.write(model, {"chunks_done": done, "rows_seen": rows})
    _report_bad_rows(chunks)
    if done:
        checkpoint.write(model, {"chunks_done": done, "rows_seen": rows})
    print(
        f"trained on {rows} rows in {done} chunks "
        f"({rows / max(seconds, 1e-9):,.0f} rows/s learning); model saved to {args.model}",
        file=sys.stderr,
    )
    return EXIT_OK


def _is_fitted(model) -> bool:
    from .stream import _is_fitted

    return _is_fitted(model)


def _report_bad_rows(chunks) -> None:
    report = getattr(chunks, "report", None)
    if report is not None and report.count:
        print(f"skipped {report.count} bad row(s):", file=sys.stderr)
        for source, line, column, reason in report.rows[:20]:
            where = f"{source}, line {line}" + (f", column {column!r}" if column else "")
            print(f"  {where}: {reason}", file=sys.stderr)
        if report.count > 20:
            print(f"  ... and {report.count - 20} more", file=sys.stderr)


def _cmd_evaluate(args) -> int:
    from ._persist import load
    from .stream import prequential

    model = load(args.model) if args.model else _new_model(args)
    chunks = _stream(args, args.target)
    metrics = tuple(args.metric or ["accuracy"])
    result = prequential(
        model,
        chunks,
        metrics=metrics,
        classes=_classes(args),
        learn=not args.no_learn,
        verbose=0 if args.quiet else 1,
    )
    _report_bad_rows(chunks)
    if args.output:
        result.to_frame().to_csv(args.output, index=False)
    rows = sum(r["rows"] for r in result.records)
    print(f"prequential evaluation over {rows} rows in {len(result.records)} chunks:")
    for m in metrics:
        print(f"  {m}: {result.running(m):.4f}")
    return EXIT_OK


def _cmd_predict(args) -> int:
    from ._persist import load, read_meta

    extra = read_meta(args.model)["extra"]
    model = load(args.model)
    args.features = None
    if "features" not in extra:
        raise ValueError(f"{args.model} holds no feature column names: train it with skocl train.")
    chunks = _stream(args, target=None, features=extra["features"])
    out = open(args.output, "w", newline="") if args.output else sys.stdout
    try:
        writer = csv.writer(out)
        classes = model.classes_
        header = ["prediction"] + ([f"proba_{c}" for c in classes] if args.proba else [])
        writer.writerow(header)
        for chunk in chunks:
            if args.proba:
                proba = model.predict_proba(chunk.X)
                labels = classes[proba.argmax(1)]
                writer.writerows([lab, *p] for lab, p in zip(labels.tolist(), proba.tolist()))
            else:
                writer.writerows([lab] for lab in model.predict(chunk.X).tolist())
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
    from .stream import StreamError

    try:
        return COMMANDS[args.command](args)
    except _UsageError as exc:
        parser.error(str(exc))  # exits with 2
    except (StreamError, ValueError, FileNotFoundError, TypeError) as exc:
        print(f"skocl {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_DATA
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
