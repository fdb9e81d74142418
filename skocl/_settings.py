"""What acts on each call of the learner: the estimator's parameters, read once per
call (:class:`Settings`), and what pretraining reports (:class:`Pretraining`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    """The estimator's parameters that act on each call, so that ``set_params``
    between calls takes effect (``OnlineFineTuneClassifier._settings`` builds it)."""

    optimizer: str
    lr: float
    weight_decay: float
    batch_size: int | str
    max_iter: int
    tol: float
    n_iter_no_change: int
    trunk_lr: float
    trunk_epochs: int
    head_lr: float
    head_steps: int
    head_rates: tuple
    fresh_head: bool
    memory_size: int
    memory_strategy: str
    logit_replay: float
    regularization: str | None
    reg_strength: float
    fusion: str | None
    ema_decay: float
    wise_alpha: float
    verbose: int

    def batch(self, n: int) -> int:
        return min(200, n) if self.batch_size == "auto" else self.batch_size


@dataclass
class Pretraining:
    """What ``pretrain`` reports: per-epoch losses and validation scores."""

    n_iter: int
    loss_curve: list
    validation_scores: list | None
    best_validation_score: float | None
    skipped: int
