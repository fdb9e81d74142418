"""The network: building or adopting a user's module, finding its trunk and head,
growing the head for new classes, and the optimizers."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ._random import seeded_build
from ._rows import to_tensor
from ._sparse import SparseLinear, csr_rows
from ._sparse_optim import LazyAdam
from ._tasks import TaskHeads

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "logistic": nn.Sigmoid,
    "gelu": nn.GELU,
    "identity": nn.Identity,
}

OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}

DTYPES = {"float32": torch.float32, "float64": torch.float64}

# hidden_layer_sizes="auto": the default trunk's width for dense input, and for sparse
# input, where the first layer holds n_features x width weights and Adam two moments of
# the same size (at 2**20 hashed features, width 32 is 384 MiB in float32). Chosen by
# benchmarks/bench_text.py over three shuffles of the docstring corpus (TEXT.md): width
# 32 is the narrowest above SGDClassifier's prequential accuracy on every shuffle (16
# falls below it) and the widest within 3x its time (48 is 3.3x, 64 4.2x).
AUTO_HIDDEN = {"dense": (256,), "sparse": (32,)}
# trunk_lr="auto": the trunk's online learning rate for dense input, and for a sparse
# first layer, whose rows (one per word) move only in the batches that hold their word,
# so they need larger steps (benchmarks/sweep_sparse_trunk_lr.py and bench_text.py at
# the sparse width above; docs/user_guide/text_streams.rst).
AUTO_TRUNK_LR = {"dense": 1e-3, "sparse": 5e-2}


class TrunkHeadNet(nn.Module):
    """A network made of a shared ``trunk`` and a task ``head``: ``head(trunk(x))``.

    Parameters
    ----------
    trunk : torch.nn.Module
        Maps inputs to features.
    head : torch.nn.Module
        Maps features to one logit per class.
    """

    def __init__(self, trunk: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``head(trunk(x))``, the logits."""
        return self.head(self.trunk(x))


def build_mlp(
    n_features: int,
    n_classes: int | list[int],
    hidden_layer_sizes: Sequence[int],
    activation: str,
    dropout: float,
    sparse: bool = False,
) -> TrunkHeadNet:
    """Default network: an MLP trunk and a linear head (with a list of ``n_classes``,
    one per task: a :class:`~skocl._tasks.TaskHeads` of linear heads). With ``sparse``,
    the first layer is a :class:`~skocl.sparse.SparseLinear` that reads CSR rows
    without densifying them."""
    layers: list[nn.Module] = []
    width = n_features
    for i, size in enumerate(hidden_layer_sizes):
        first = SparseLinear(width, size) if sparse and i == 0 else nn.Linear(width, size)
        layers += [first, ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    if isinstance(n_classes, list):
        head = TaskHeads([nn.Linear(width, n) for n in n_classes])
    else:
        head = nn.Linear(width, n_classes)
    return TrunkHeadNet(nn.Sequential(*layers), head)


def split_module(
    module: nn.Module, trunk_attr: str, head_attr: str
) -> tuple[nn.Module, nn.Module]:
    """Find the trunk and the head of a user's module by attribute name.

    An ``nn.Sequential`` without those attributes is split into all layers but the last
    (trunk) and the last layer (head).
    """
    has_trunk, has_head = hasattr(module, trunk_attr), hasattr(module, head_attr)
    if has_trunk and has_head:
        trunk, head = getattr(module, trunk_attr), getattr(module, head_attr)
        for attr, part in ((trunk_attr, trunk), (head_attr, head)):
            if not isinstance(part, nn.Module):
                raise TypeError(
                    f"module.{attr} is a {type(part).__name__}, not a torch.nn.Module."
                )
        return trunk, head
    if isinstance(module, nn.Sequential) and not (has_trunk or has_head) and len(module) >= 2:
        return module[:-1], module[-1]
    missing = [name for name, ok in ((trunk_attr, has_trunk), (head_attr, has_head)) if not ok]
    raise AttributeError(
        f"module of type {type(module).__name__} has no attribute "
        f"{' or '.join(repr(m) for m in missing)}. skocl computes head(trunk(X)): set "
        "trunk_attr and head_attr to the names of the module's shared trunk and task "
        "head submodules (defaults 'trunk' and 'head'), or pass an nn.Sequential whose "
        "last layer is the head."
    )


def strip_softmax(module: nn.Module) -> nn.Module:
    """Drop a trailing ``nn.Softmax`` of an ``nn.Sequential`` so that it returns logits."""
    if isinstance(module, nn.Sequential) and len(module) and isinstance(module[-1], nn.Softmax):
        return module[:-1]
    return module


def output_layer(head: nn.Module, n_classes: int) -> nn.Linear | None:
    """The Linear layer that produces the head's logits: the head itself or its last
    Linear with ``n_classes`` outputs."""
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if linears and linears[-1].out_features == n_classes:
        return linears[-1]
    return None


def grow_linear(
    layer: nn.Linear, positions: np.ndarray, n_out: int, optimizers, gen: torch.Generator
) -> list[tuple[nn.Parameter, nn.Parameter]]:
    """Give ``layer`` ``n_out`` outputs; old output ``i`` moves to row ``positions[i]``,
    its weights kept exactly, new rows initialised as ``nn.Linear`` does.

    Optimizer state of the old parameters (Adam's moments, the step count) moves to the
    new ones, padded with zeros for the new rows, so no optimizer is rebuilt.
    Returns the ``(old, new)`` parameter pairs.
    """
    idx = torch.as_tensor(positions, dtype=torch.long, device=layer.weight.device)
    bound = 1.0 / math.sqrt(layer.in_features)
    pairs = []
    for name in ("weight", "bias"):
        old = getattr(layer, name)
        if old is None:
            continue
        shape = (n_out, *old.shape[1:])
        fresh = torch.empty(shape, dtype=old.dtype).uniform_(-bound, bound, generator=gen)
        fresh = fresh.to(old.device)
        with torch.no_grad():
            fresh[idx] = old
        new = nn.Parameter(fresh, requires_grad=old.requires_grad)
        setattr(layer, name, new)
        pairs.append((old, new))
    layer.out_features = n_out
    for opt in optimizers:
        for old, new in pairs:
            _move_optimizer_state(opt, old, new, idx)
    return pairs


@dataclass
class Growth:
    """A growth of the head to a larger label set, as the components follow it: old
    class ``i`` is now ``positions[i]`` of ``n_classes``; ``pairs`` are the grown
    ``(old, new)`` parameters, ``gen`` the random stream for fresh rows."""

    positions: np.ndarray
    n_classes: int
    pairs: list
    old_head_params: list
    new_head_params: list
    gen: torch.Generator
    device: torch.device
    # Of several tasks: the grown task, and the map of old to new global label indices
    # (the components holding labels follow it); of one task, ``positions``.
    task: int | None = None
    label_map: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.label_map is None:
            self.label_map = self.positions

    def layer(self, head: nn.Module) -> nn.Linear | None:
        """The output layer that grew, in ``head`` or a copy of it."""
        if self.task is not None:
            return head.heads[self.task]
        return output_layer(head, len(self.positions))


def _move_optimizer_state(opt, old, new, idx) -> None:
    for group in opt.param_groups:
        group["params"] = [new if p is old else p for p in group["params"]]
    state = opt.state.pop(old, None)
    if state is None:
        return
    moved = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.shape == old.shape:
            padded = torch.zeros_like(new)
            padded[idx] = value
            value = padded
        moved[key] = value
    opt.state[new] = moved


def make_optimizer(
    name: str, params: list[nn.Parameter], lr: float, weight_decay: float, lazy: bool = False
):
    """The named optimizer, fused (one kernel for all parameters) where torch has it.
    With ``lazy`` (parameters with row-sparse gradients), ``"adam"`` is
    :class:`~skocl.sparse.LazyAdam`."""
    if lazy and name == "adam":
        return LazyAdam(params, lr=lr, weight_decay=weight_decay)
    kwargs = {"momentum": 0.9} if name == "sgd" else {}
    try:
        return OPTIMIZERS[name](params, lr=lr, weight_decay=weight_decay, fused=True, **kwargs)
    except (RuntimeError, ValueError, TypeError):
        return OPTIMIZERS[name](params, lr=lr, weight_decay=weight_decay, **kwargs)


def has_stochastic_layers(module: nn.Module) -> bool:
    """Whether a forward pass in train mode draws random numbers (dropout and friends)."""
    stochastic = (nn.modules.dropout._DropoutNd, nn.AlphaDropout, nn.RReLU)
    return any(isinstance(m, stochastic) for m in module.modules())


# Layers that compute the same in train and eval mode.
MODE_FREE = (
    nn.Linear, nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.Identity, nn.LeakyReLU, nn.ELU,
    nn.SiLU, nn.Sequential, nn.ModuleList,
)  # fmt: skip


def is_mode_free(module: nn.Module) -> bool:
    """Whether every layer of ``module`` (of the types skocl builds and common
    activations) computes the same in train and eval mode, so that switching modes
    around a step is work for nothing (``train()`` and ``eval()`` walk every
    submodule: about 45 µs of a 32-row ``partial_fit``)."""
    return all(
        type(m) in MODE_FREE or type(m) in (TrunkHeadNet, TaskHeads, SparseLinear)
        for m in module.modules()
    )


def is_skorch_net(obj) -> bool:
    try:
        from skorch import NeuralNet
    except ImportError:  # pragma: no cover - skorch is a core dependency
        return False
    return isinstance(obj, NeuralNet)


def make_module(params: dict, n_classes, X, seed: int, device: torch.device):
    """Build or deep-copy the network described by the estimator's ``params``, find
    its trunk and head, and check that it maps X's width to ``n_classes`` logits (a
    list of ``n_classes``, one per task: the default network with a head per task).

    Returns ``(module, trunk, head)`` on ``device`` in the ``dtype`` of ``params``.
    """
    source, n_features = params["module"], X.shape[1]
    if source is None:
        hidden = hidden_sizes(params["hidden_layer_sizes"], sp.issparse(X))
        module = seeded_build(
            seed,
            build_mlp,
            n_features,
            n_classes,
            hidden,
            params["activation"],
            params["dropout"],
            sp.issparse(X) and len(hidden) > 0,
        )
    elif is_skorch_net(source):
        module = copy.deepcopy(source.module_)
    elif isinstance(source, nn.Module):
        module = copy.deepcopy(source)
    elif isinstance(source, type) and issubclass(source, nn.Module):
        module = seeded_build(seed, source, **(params["module_kwargs"] or {}))
    else:
        raise TypeError(
            f"module must be None, a torch.nn.Module instance or class, or a fitted "
            f"skorch NeuralNetClassifier; got {type(source).__name__}."
        )
    nll = is_skorch_net(source) and isinstance(source.criterion_, nn.NLLLoss)
    if nll:
        # skorch's NLLLoss nets end in a softmax; skocl's heads return logits.
        module = strip_softmax(module)
    trunk, head = split_module(module, params["trunk_attr"], params["head_attr"])
    if nll:
        head = strip_softmax(head)
    if isinstance(n_classes, list) != isinstance(head, TaskHeads) or (
        isinstance(head, TaskHeads) and head.sizes != n_classes
    ):
        raise ValueError(_heads_mismatch(head, n_classes))
    for name, part in (("trunk", trunk), ("head", head)):
        if not any(p.requires_grad for p in part.parameters()):
            raise ValueError(f"The module's {name} has no trainable parameters.")
    dtype = DTYPES[params["dtype"]]
    module = module.to(device=device, dtype=dtype)
    if source is not None:
        total = sum(n_classes) if isinstance(n_classes, list) else n_classes
        _check_output(module, trunk, head, X, total, dtype, device)
    return module, trunk, head


def _heads_mismatch(head: nn.Module, n_classes) -> str:
    """Why a module's head does not fit the tasks of y."""
    if not isinstance(n_classes, list):
        return (
            "module's head is a TaskHeads (a head per task), but y has one column: give y "
            f"a column per task ({len(head.heads)} of them)."
        )
    if not isinstance(head, TaskHeads):
        return (
            f"y has {len(n_classes)} columns (one task each), so the network needs a head "
            "per task: make the module's head a skocl.TaskHeads of one nn.Linear per task, "
            f"with {n_classes} outputs (the default network, module=None, builds it)."
        )
    return (
        f"module's TaskHeads gives {head.sizes} outputs per task; y's tasks have "
        f"{n_classes} classes."
    )


def hidden_sizes(hidden_layer_sizes, sparse: bool) -> tuple:
    """``hidden_layer_sizes`` with ``"auto"`` resolved for dense or sparse input."""
    if isinstance(hidden_layer_sizes, str):
        return AUTO_HIDDEN["sparse" if sparse else "dense"]
    return tuple(hidden_layer_sizes)


def takes_sparse(module: nn.Module) -> bool:
    """Whether the network reads CSR rows as :class:`~skocl.sparse.SparseRows`: as its
    ``accepts_sparse`` attribute says, and without one, when it holds a
    :class:`~skocl.sparse.SparseLinear` (the default network built for sparse input)."""
    if hasattr(module, "accepts_sparse"):
        return bool(module.accepts_sparse)
    return any(isinstance(m, SparseLinear) for m in module.modules())


def sparse_layers(module: nn.Module) -> list[SparseLinear]:
    return [m for m in module.modules() if isinstance(m, SparseLinear)]


def _check_output(module, trunk, head, X, n_classes, dtype, device) -> None:
    if sp.issparse(X) and takes_sparse(module):
        x = csr_rows(X, slice(0, 2), dtype=dtype, device=device)
    else:
        rows = X[:2].toarray() if sp.issparse(X) else X[:2]
        x = to_tensor(np.asarray(rows), dtype, device)
    trunk.eval()
    head.eval()
    try:
        with torch.inference_mode():
            out = head(trunk(x))
    except Exception as exc:
        raise ValueError(
            f"module cannot compute head(trunk(X)) on X with {X.shape[1]} features: {exc}"
        ) from exc
    if out.ndim != 2 or out.shape[1] != n_classes:
        raise ValueError(
            f"module's head returns output of shape {tuple(out.shape)} for 2 rows, "
            f"expected (2, {n_classes}): one logit for each of the {n_classes} classes."
        )


def resolve_device(device) -> torch.device:
    """The torch device of the ``device`` parameter; an error when CUDA is asked for
    and missing."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here.")
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        raise ValueError(
            f"device={device!r} but this machine has {torch.cuda.device_count()} CUDA device(s)."
        )
    return resolved
