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


class FrozenStepWarning(SkoclWarning):
    """A step of a :class:`~skocl.StreamPipeline` (or a part of a
    :class:`~skocl.compose.StreamColumnTransformer`) has no ``partial_fit``: it is used as
    fitted and learns nothing from the stream. The message names the step and an online
    replacement; filter the warning where a frozen step is what you want."""
