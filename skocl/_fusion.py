r"""Fusion, the last step of the online update: which weights predict.

``NoFusion`` serves the live weights. ``EMAFusion`` serves an exponential moving average
of the weights after each update, :math:`\bar w \leftarrow m \bar w + (1 - m) w`;
``WiSEFusion`` the WiSE-FT interpolation :math:`(1-\alpha) w^* + \alpha w` between the
pretrained start :math:`w^*` and the live weights (Wortsman et al. 2022, "Robust
fine-tuning of zero-shot models"). The fused weights live in a copy of the trunk and the
head, made at the first update that needs it.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ._modules import grow_linear


class Fusion:
    """Serves the live weights; the base of the fusion strategies.

    ``copy`` is the ``(trunk, head)`` pair that serves instead of the live one, or None.
    """

    def __init__(self, served_copy: tuple[nn.Module, nn.Module] | None = None) -> None:
        self.copy = served_copy

    def served(self, trunk: nn.Module, head: nn.Module) -> tuple[nn.Module, nn.Module]:
        return (trunk, head) if self.copy is None else self.copy

    def after_update(self, trunk, head, params, anchor) -> None:
        """Set the served weights after an update of ``params`` (trunk's then head's)."""
        self.copy = None

    def restart(self) -> None:
        """React to a drift."""

    def grow(self, growth) -> None:
        """Follow the head's growth (the live weights grow by themselves)."""

    def state_dict(self) -> dict:
        return {} if self.copy is None else {"served": [part.state_dict() for part in self.copy]}

    def load_state_dict(self, state: dict, trunk: nn.Module, head: nn.Module) -> None:
        self.copy = None
        if "served" in state:
            self.copy = copy.deepcopy((trunk, head))
            for part, part_state in zip(self.copy, state["served"]):
                part.load_state_dict(part_state)

    def _grow_copy(self, growth) -> None:
        if self.copy is not None:
            layer = growth.layer(self.copy[1])
            grow_linear(layer, growth.positions, growth.n_classes, [], growth.gen)

    def add_head(self, head: nn.Module) -> None:
        """A new task's head joins the served copy (its weights as they are now)."""
        if self.copy is not None:
            self.copy[1].heads.append(copy.deepcopy(head))

    def _copy_buffers(self, trunk, head) -> None:
        for part, src in zip(self.copy, (trunk, head)):
            for b_serve, b in zip(part.buffers(), src.buffers()):
                b_serve.copy_(b)


NoFusion = Fusion


class EMAFusion(Fusion):
    """Serves the exponential moving average of the weights, with decay ``decay``; a
    drift restarts the average at the next update's weights."""

    def __init__(self, decay: float, served_copy=None) -> None:
        super().__init__(served_copy)
        self.decay = decay

    def after_update(self, trunk, head, params, anchor) -> None:
        if self.copy is None:
            self.copy = copy.deepcopy((trunk, head))
            return  # the average starts at the current weights
        served = [p for part in self.copy for p in part.parameters() if p.requires_grad]
        with torch.no_grad():
            for s, c in zip(served, params):
                s.lerp_(c, 1.0 - self.decay)
        self._copy_buffers(trunk, head)

    def restart(self) -> None:
        self.copy = None

    def grow(self, growth) -> None:
        self._grow_copy(growth)


class WiSEFusion(Fusion):
    """Serves ``(1 - alpha) * start + alpha * live``, the start being the anchor's."""

    def __init__(self, alpha: float, served_copy=None) -> None:
        super().__init__(served_copy)
        self.alpha = alpha

    def after_update(self, trunk, head, params, anchor) -> None:
        if self.copy is None:
            self.copy = copy.deepcopy((trunk, head))
        served = [p for part in self.copy for p in part.parameters() if p.requires_grad]
        with torch.no_grad():
            for s, p0, p in zip(served, anchor.trunk + anchor.head, params):
                s.copy_(torch.lerp(p0, p, self.alpha))
        self._copy_buffers(trunk, head)

    def grow(self, growth) -> None:
        self._grow_copy(growth)


def make_fusion(kind: str | None, ema_decay: float, wise_alpha: float, previous=None) -> Fusion:
    """The fusion strategy named by the ``fusion`` parameter; it takes over the served
    copy of ``previous`` (the strategy of the last call)."""
    served_copy = None if previous is None else previous.copy
    if kind == "ema":
        return EMAFusion(ema_decay, served_copy)
    if kind == "wise":
        return WiSEFusion(wise_alpha, served_copy)
    return NoFusion(served_copy)
