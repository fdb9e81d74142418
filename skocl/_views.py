"""Fitted attributes of the estimator that are views of its learner's state."""

from __future__ import annotations

from ._modules import TrunkHeadNet


class LearnerViewsMixin:
    """``drift_detector_``, ``drifts_``, ``head_lr_``, ``fresh_heads_`` and
    ``served_module_``, read from ``learner_`` (documented in the estimator's
    Attributes)."""

    @property
    def drift_detector_(self):
        return self.learner_.drift.detector

    @property
    def drifts_(self):
        return self.learner_.drift.drifts

    @property
    def head_lr_(self):
        rates = self.learner_.rates
        return self.head_lr * (1.0 if rates is None or rates.weight is None else rates.rate)

    @property
    def fresh_heads_(self):
        return getattr(self.learner_.fresh, "takeovers", 0)

    @property
    def served_module_(self):
        return TrunkHeadNet(*self.learner_.served)
