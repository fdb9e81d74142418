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
    problem on one line."""
