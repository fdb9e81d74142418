"""Checkpoints of a run over a stream: the model, where the stream stands, what it reads.

A checkpoint is a model file written by :func:`skocl.save` whose ``extra`` data holds the
position in the stream (``chunks_done``, plus what the loop keeps: prequential records,
an accuracy tally) and, when given, a description of the run (the files with their
sizes and a hash of their start and end, the chunk size, the parameters). Resuming
reloads the model, checks that the run is the same one, and says how many chunks to
read past.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# Bytes hashed at each end of a file to recognise it: a changed file nearly always
# changes its size, its header or its last rows.
_HASHED_BYTES = 1 << 16


class CheckpointMismatch(ValueError):
    """A resume that would not continue the run that wrote the checkpoint.

    Attributes
    ----------
    differences : list of str
        One line per difference, e.g. ``"chunksize: 500 in the checkpoint, 1000 now"``.
    """

    def __init__(self, message: str, differences: list[str]) -> None:
        super().__init__(message)
        self.differences = differences


class Checkpoint:
    """Write a model and its stream position atomically; resume from them.

    Parameters
    ----------
    path : str or path-like
        The checkpoint file (a model file: :func:`skocl.load` reads it as any other).
    every : int, default=10
        Chunks between writes (see :meth:`due`).
    run : dict, default=None
        JSON-able description of the run (files, chunk size, parameters). It is saved
        with each write, and :meth:`resume` refuses a checkpoint whose saved run differs,
        naming what differs. None checks nothing.
    extra : dict, default=None
        Further JSON-able data saved with each write; read at write time, so it may be
        filled in while the stream runs.

    Attributes
    ----------
    path : pathlib.Path
        The checkpoint file.
    every, run, extra
        As given.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from skocl import OnlineFineTuneClassifier
    >>> from skocl.stream import Checkpoint
    >>> X, y = np.random.RandomState(0).rand(40, 3), np.array([0, 1] * 20)
    >>> clf = OnlineFineTuneClassifier(random_state=0).partial_fit(X, y, classes=[0, 1])
    >>> ckpt = Checkpoint(os.path.join(tempfile.mkdtemp(), "run.skocl"), run={"chunksize": 20})
    >>> ckpt.write(clf, {"chunks_done": 2})
    >>> model, position = ckpt.resume()
    >>> position["chunks_done"]
    2
    >>> Checkpoint(ckpt.path, run={"chunksize": 10}).resume()
    Traceback (most recent call last):
    ...
    skocl._checkpoint.CheckpointMismatch: ... chunksize: 20 in the checkpoint, 10 now
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        every: int = 10,
        run: dict | None = None,
        extra: dict | None = None,
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"checkpoint_every must be an int of at least 1, got {every!r}")
        self.path = Path(path)
        self.every = every
        self.run = run
        self.extra = extra

    def exists(self) -> bool:
        """Whether the checkpoint file exists."""
        return self.path.is_file()

    def due(self, chunks_done: int) -> bool:
        """Whether to write after ``chunks_done`` chunks: every ``every`` chunks."""
        return chunks_done % self.every == 0

    def write(self, estimator, position: dict) -> None:
        """Save ``estimator`` with ``position`` (which holds ``chunks_done``), atomically.

        The file is written under a temporary name, flushed to disk and renamed over
        ``path``: a run killed at any moment leaves the previous checkpoint or the new
        one, never a mixture.
        """
        from ._persist import save

        extra = {**(self.extra or {}), **position}
        if self.run is not None:
            extra["run"] = self.run
        tmp = self.path.with_name(self.path.name + ".checkpoint")
        save(estimator, tmp, extra=extra)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)

    def read_position(self) -> dict:
        """The ``extra`` data of the checkpoint, checked against ``run``.

        Raises
        ------
        CheckpointMismatch
            When the file holds no checkpoint (a model saved otherwise), or when
            ``run`` was given and the saved run differs.
        """
        from ._persist import read_meta

        extra = read_meta(self.path)["extra"]
        if "chunks_done" not in extra:
            raise CheckpointMismatch(
                f"{self.path} holds a model but no checkpoint of a run (no stream "
                "position): there is nothing to resume.",
                ["no stream position"],
            )
        if self.run is not None:
            differences = run_differences(extra.get("run"), self.run)
            if differences:
                raise CheckpointMismatch(
                    f"{self.path} is the checkpoint of another run; resuming continues "
                    "only the run that wrote it, and this one differs:\n  "
                    + "\n  ".join(differences),
                    differences,
                )
        return extra

    def resume(self, *, module: Any = None) -> tuple[Any, dict]:
        """Load the checkpointed model and its position.

        Parameters
        ----------
        module : torch.nn.Module, default=None
            Passed to :func:`skocl.load`, for a model built from a module instance.

        Returns
        -------
        estimator : OnlineFineTuneClassifier or StreamPipeline
            The model as it was after ``position["chunks_done"]`` chunks.
        position : dict
            The saved ``extra`` data: ``chunks_done`` and what the loop kept.
        """
        from ._persist import load

        position = self.read_position()
        return load(self.path, module=module), position


def run_differences(saved: dict | None, now: dict) -> list[str]:
    """What differs between the run a checkpoint recorded and this one, one line each."""
    if saved is None:
        return ["the checkpoint records no run to compare with (written by skocl.stream)"]
    out = []
    for key in sorted(set(saved) | set(now)):
        old, new = saved.get(key), now.get(key)
        if old == new:
            continue
        if key == "files" and isinstance(old, list) and isinstance(new, list):
            out.extend(_file_differences(old, new))
        else:
            out.append(f"{key}: {old!r} in the checkpoint, {new!r} now")
    return out


def _file_differences(old: list[dict], new: list[dict]) -> list[str]:
    old_paths = [f["path"] for f in old]
    new_paths = [f["path"] for f in new]
    if old_paths != new_paths:
        return [f"files: the checkpoint's run read {old_paths}, this one reads {new_paths}"]
    out = []
    for a, b in zip(old, new):
        if a["size"] != b["size"]:
            out.append(
                f"file {a['path']} changed since the checkpoint: {a['size']} bytes then, "
                f"{b['size']} now"
            )
        elif a != b:
            out.append(f"file {a['path']} changed since the checkpoint: its content differs")
    return out


def describe_files(sources: Iterable[str | os.PathLike]) -> list[dict]:
    """Each file a stream will read, as ``{path, size, sha256}`` (of its first and last
    64 KiB), in reading order.

    Globs are expanded as the readers expand them (matches sorted). A path that names
    no file is kept with ``size`` None; the reader reports it.
    """
    out = []
    for item in sources:
        name = os.fspath(item)
        if os.path.isfile(name):
            paths = [name]
        elif glob.has_magic(name):
            paths = sorted(m for m in glob.glob(name) if os.path.isfile(m))
        else:
            paths = []
            out.append({"path": os.path.abspath(name), "size": None, "sha256": None})
        for path in paths:
            out.append(_describe_file(path))
    return out


def _describe_file(path: str) -> dict:
    size = os.path.getsize(path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(_HASHED_BYTES))
        if size > 2 * _HASHED_BYTES:
            f.seek(size - _HASHED_BYTES)
        digest.update(f.read(_HASHED_BYTES))
    return {"path": os.path.abspath(path), "size": size, "sha256": digest.hexdigest()}


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not possible on every platform (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
