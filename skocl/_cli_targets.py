"""The command's side of several targets (``--target`` given several times): the
label columns, the model's tasks against them, the prequential tally of subset accuracy
and the prediction CSV's columns. Like ``cli``, it imports only the standard library at
the top."""

from __future__ import annotations


def targets(args) -> list[str]:
    """The label columns: one ``--target``, or several."""
    return args.target if isinstance(args.target, list) else [args.target]


def check_model_targets(path, model, args) -> None:
    """A saved model is scored on as many targets as it learned."""
    from ._persist import read_meta

    final = model.steps[-1][1] if hasattr(model, "steps") else model
    n_tasks = getattr(final, "n_outputs_", 1)
    if n_tasks != len(targets(args)):
        saved = read_meta(path)["extra"].get("target")
        names = f" ({', '.join(saved) if isinstance(saved, list) else saved})" if saved else ""
        raise ValueError(
            f"{path} learned {n_tasks} target(s){names}, but {len(targets(args))} --target "
            "given: give --target once for each, in the same order"
        )


def right(pred, y) -> tuple[int, int]:
    """Rows predicted right and rows scored. Of several targets, a row is right when
    every label it has is predicted (the subset accuracy of the model's ``score``) and
    scored when it has a label."""
    if y.ndim == 1:
        return int((pred == y).sum()), len(y)
    from ._validation import rows_right

    right, labelled = rows_right(pred, list(y.T))
    return int((right & labelled).sum()), int(labelled.sum())


def subset_accuracy(estimator, X, y) -> float:
    """The scorer of evaluate's accuracy with several targets: the model's ``score``."""
    return estimator.score(X, y)


def task_names(path, n_tasks: int) -> list[str]:
    """The targets a model of several tasks learned (their positions when its file
    does not name them)."""
    from ._persist import read_meta

    saved = read_meta(path)["extra"].get("target")
    if isinstance(saved, list) and len(saved) == n_tasks:
        return [str(name) for name in saved]
    return [str(t) for t in range(n_tasks)]


def prediction_header(args, model) -> list[str]:
    """``prediction`` and ``proba_<class>``; of several targets, ``prediction_<target>``
    for each target, then ``proba_<target>_<class>`` for each target in turn."""
    classes = model.classes_
    if not isinstance(classes, list):
        return ["prediction"] + ([f"proba_{c}" for c in classes] if args.proba else [])
    names = task_names(args.model, len(classes))
    header = [f"prediction_{name}" for name in names]
    if args.proba:
        header += [f"proba_{name}_{c}" for name, labels in zip(names, classes) for c in labels]
    return header


def prediction_rows(model, X, proba: bool) -> list[list]:
    """The CSV rows of the predictions of ``X``: the label (of each target), then with
    ``proba`` the probability of each class (of each target in turn)."""
    if not proba:
        pred = model.predict(X)
        return pred.tolist() if pred.ndim == 2 else [[label] for label in pred.tolist()]
    import numpy as np

    classes, probas = model.classes_, model.predict_proba(X)
    if not isinstance(classes, list):
        classes, probas = [classes], [probas]
    labels = zip(*(c[p.argmax(1)].tolist() for c, p in zip(classes, probas)))
    return [[*lab, *p] for lab, p in zip(labels, np.hstack(probas).tolist())]
