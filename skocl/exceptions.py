"""Warnings and errors raised by skocl."""


class SkoclWarning(UserWarning):
    """Base class of skocl's warnings."""


class NonFiniteStepWarning(SkoclWarning, RuntimeWarning):
    """A gradient step had a non-finite loss or gradient and was skipped."""


class DriftDetectionUnavailableWarning(SkoclWarning):
    """``drift_detector="auto"`` found no river installed: drift is not detected."""


class ModelFileError(ValueError):
    """A model file cannot be loaded: it is damaged or malformed, in another model format
    version, or asks for a type that is not trusted. The message names the file and the
    problem on one line.

    Examples
    --------
    >>> import os, tempfile
    >>> import skocl
    >>> path = os.path.join(tempfile.mkdtemp(), "model.skocl")
    >>> with open(path, "wb") as f:
    ...     _ = f.write(b"not a zip archive")
    >>> try:
    ...     skocl.load(path)
    ... except skocl.exceptions.ModelFileError as exc:
    ...     print(str(exc).split(": ", 1)[1])
    not a skocl model file (not a readable zip archive) (BadZipFile: File is not a zip file).
    """


class FrozenStepWarning(SkoclWarning):
    """A step of a :class:`~skocl.StreamPipeline` (or a part of a
    :class:`~skocl.compose.StreamColumnTransformer`) has no ``partial_fit``: it is used as
    fitted and learns nothing from the stream. The message names the step and an online
    replacement; filter the warning where a frozen step is what you want."""
