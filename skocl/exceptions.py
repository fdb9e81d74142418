"""Warnings raised by skocl."""


class SkoclWarning(UserWarning):
    """Base class of skocl's warnings."""


class NonFiniteStepWarning(SkoclWarning, RuntimeWarning):
    """A gradient step had a non-finite loss or gradient and was skipped."""


class DriftDetectionUnavailableWarning(SkoclWarning):
    """``drift_detector="auto"`` found no river installed: drift is not detected."""
