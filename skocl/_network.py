"""The torch side of skocl: networks, optimizers, seeding and the update rules.

Everything here speaks torch tensors; the estimator in ``_classifier.py`` validates
input, encodes labels and keeps the fitted attributes. The online update rule lives
in :func:`online_update`; pretraining in :func:`train_epoch`.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

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

# Rows pushed through the network at once when predicting or computing features; bounds
# the memory of a forward pass over a large X.
FORWARD_CHUNK = 1 << 18


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
    n_classes: int,
    hidden_layer_sizes: Sequence[int],
    activation: str,
    dropout: float,
) -> TrunkHeadNet:
    """Default network: an MLP trunk and a linear head."""
    layers: list[nn.Module] = []
    width = n_features
    for size in hidden_layer_sizes:
        layers += [nn.Linear(width, size), ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    return TrunkHeadNet(nn.Sequential(*layers), nn.Linear(width, n_classes))


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


def make_optimizer(name: str, params: list[nn.Parameter], lr: float, weight_decay: float):
    """The named optimizer, fused (one kernel for all parameters) where torch has it."""
    kwargs = {"momentum": 0.9} if name == "sgd" else {}
    try:
        return OPTIMIZERS[name](params, lr=lr, weight_decay=weight_decay, fused=True, **kwargs)
    except (RuntimeError, ValueError, TypeError):
        return OPTIMIZERS[name](params, lr=lr, weight_decay=weight_decay, **kwargs)


def has_stochastic_layers(module: nn.Module) -> bool:
    """Whether a forward pass in train mode draws random numbers (dropout and friends)."""
    stochastic = (nn.modules.dropout._DropoutNd, nn.AlphaDropout, nn.RReLU)
    return any(isinstance(m, stochastic) for m in module.modules())


# --------------------------------------------------------------------------- seeding
class Rng:
    """A private random stream kept as a state tensor, so it pickles and never touches
    torch's or numpy's global generators.

    ``shuffle`` draws permutations from it; ``scope`` runs code that uses torch's
    global generator (dropout) on a seed drawn from it, restoring the global state after.
    """

    def __init__(self, seed: int) -> None:
        gen = torch.Generator()
        gen.manual_seed(seed)
        self.state = gen.get_state()

    @contextlib.contextmanager
    def generator(self) -> Iterator[torch.Generator]:
        gen = torch.Generator()
        gen.set_state(self.state)
        try:
            yield gen
        finally:
            self.state = gen.get_state()

    @contextlib.contextmanager
    def scope(self, device: torch.device, needed: bool = True) -> Iterator[torch.Generator]:
        with self.generator() as gen:
            if not needed:
                yield gen
                return
            with _seeded_globals(int(torch.randint(2**62, (1,), generator=gen)), device):
                yield gen


# torch's global generators are process-wide: threads that seed them (dask or joblib
# workers with several threads) take turns.
_GLOBAL_RNG_LOCK = threading.RLock()


@contextlib.contextmanager
def _seeded_globals(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the global generator of ``device`` (only that one), restore it after."""
    cuda = device.type == "cuda"
    with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[device] if cuda else []):
        torch.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


def seeded_build(seed: int, build, *args, **kwargs):
    """Call ``build`` (which initialises weights on the CPU) under a fixed seed, the
    global generators untouched."""
    with _seeded_globals(seed, torch.device("cpu")):
        return build(*args, **kwargs)


# --------------------------------------------------------------------------- data
@dataclass
class Chunk:
    """A labelled chunk of rows, ready for the network.

    ``X`` stays in host memory (a tensor, or a scipy CSR matrix densified one
    mini-batch at a time); :meth:`rows` copies the rows asked for to ``device``, so only
    the rows in use cross to a GPU. The first request for the whole chunk (a chunk no
    larger than a mini-batch, the head's features, the replay memory's offer) keeps its
    device copy for the later ones, so a chunk crosses once per use, not once per step.
    Labels ``y`` and weights ``w`` (None: all ones) are small and live on ``device``.
    """

    X: torch.Tensor | sp.csr_matrix
    y: torch.Tensor
    w: torch.Tensor | None
    dtype: torch.dtype
    device: torch.device
    _whole: torch.Tensor | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return self.y.shape[0]

    def rows(self, idx: torch.Tensor | slice | None) -> torch.Tensor:
        """Rows of X on ``device`` (all when ``idx`` is None; ``idx`` a CPU tensor or a
        slice)."""
        n = len(self)
        whole = idx is None or (isinstance(idx, slice) and idx.indices(n) == (0, n, 1))
        if self._whole is not None:
            if whole:
                return self._whole
            return self._whole[idx if isinstance(idx, slice) else idx.to(self.device)]
        X = self.X
        if whole:
            idx = slice(None)
        if isinstance(X, torch.Tensor):
            rows = X[idx]
        else:
            rows = to_tensor(
                X[idx.numpy() if isinstance(idx, torch.Tensor) else idx].toarray(), self.dtype
            )
        if self.device.type == "cpu":
            return rows
        rows = rows.to(self.device, non_blocking=True)
        if whole:
            self._whole = rows
        return rows

    def slices(self, batch_size: int) -> Iterator[torch.Tensor]:
        """All rows on ``device`` in order, ``FORWARD_CHUNK`` rows at a time (a sparse
        chunk ``batch_size`` rows at a time, densified); a chunk that fits is one
        whole-chunk request."""
        step = FORWARD_CHUNK if isinstance(self.X, torch.Tensor) else batch_size
        for s in range(0, len(self), step):
            yield self.rows(slice(s, s + step))

    def batches(self, batch_size: int, gen: torch.Generator | None) -> Iterator[tuple]:
        """Mini-batches ``(X, y, w)`` in a random order (when ``gen`` is given)."""
        n = len(self)
        if n <= batch_size:
            yield self.rows(None), self.y, self.w
            return
        order = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
        on_device = order.to(self.device)
        for start in range(0, n, batch_size):
            idx, idx_d = order[start : start + batch_size], on_device[start : start + batch_size]
            yield self.rows(idx), self.y[idx_d], None if self.w is None else self.w[idx_d]


def to_tensor(
    X: np.ndarray, dtype: torch.dtype, device: torch.device | None = None
) -> torch.Tensor:
    """A dense numpy array as a tensor (on the CPU unless ``device`` is given);
    zero-copy when dtype and layout allow."""
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    if X.dtype != np_dtype or not X.flags.c_contiguous or not X.flags.writeable:
        X = np.array(X, dtype=np_dtype, order="C")
    t = torch.from_numpy(X)
    return t if device is None or device.type == "cpu" else t.to(device)


def make_chunk(X, y_idx: np.ndarray, w: np.ndarray | None, dtype, device) -> Chunk:
    Xt = X.tocsr() if sp.issparse(X) else to_tensor(X, dtype)
    yt = torch.from_numpy(np.asarray(y_idx, dtype=np.int64))
    wt = None if w is None else torch.from_numpy(np.asarray(w, dtype=np.float64)).to(dtype)
    if device.type != "cpu":
        yt = yt.to(device)
        wt = None if wt is None else wt.to(device)
    return Chunk(Xt, yt, wt, dtype, device)


# --------------------------------------------------------------------------- steps
def weighted_loss(logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy averaged over the batch, weighted by ``w`` when given."""
    if w is None:
        return F.cross_entropy(logits, y)
    return (F.cross_entropy(logits, y, reduction="none") * w).sum() / w.sum()


def apply_step(
    optimizer, params: list[nn.Parameter], grads, loss: torch.Tensor | None = None
) -> bool:
    """Step ``optimizer`` with ``grads`` unless the loss or a gradient is not finite;
    a skipped step leaves the weights as they were. Returns whether it was taken.

    A finite gradient can still make a weight non-finite (a learning rate far too
    high): :class:`Transaction` catches that once per call rather than per step.
    """
    total = loss.detach() if loss is not None else 0.0
    for g in grads:
        total = total + g.sum()
    # One sync for the whole check: any inf or NaN makes the sum non-finite.
    if not bool(torch.isfinite(total)):
        return False
    for p, g in zip(params, grads):
        p.grad = g
    optimizer.step()
    return True


class Transaction:
    """Parameters as they were at the start of an update, put back by
    :meth:`rollback` if the update left a weight that is not finite.

    One copy per update, not per step, keeps the promise that weights never become NaN
    at the cost of one copy of the parameters. Rolling back also clears the optimizer
    state of those parameters (Adam's moments start afresh): the state that led to a
    non-finite weight is not worth keeping.
    """

    def __init__(self, params: list[nn.Parameter], optimizers) -> None:
        self.params = params
        self.optimizers = [opt for opt in optimizers if opt is not None]
        with torch.no_grad():
            self.weights = [p.clone() for p in params]

    @torch.no_grad()
    def finite(self) -> bool:
        return bool(torch.isfinite(torch.cat([p.reshape(-1) for p in self.params]).sum()))

    @torch.no_grad()
    def rollback(self) -> None:
        for p, w in zip(self.params, self.weights):
            p.copy_(w)
            for opt in self.optimizers:
                opt.state.pop(p, None)


def gradient_step(loss: torch.Tensor, optimizer, params: list[nn.Parameter]) -> bool:
    """Differentiate ``loss`` with respect to ``params`` only and take a guarded step."""
    grads = torch.autograd.grad(loss, params, materialize_grads=True)
    return apply_step(optimizer, params, grads, loss)


def train_epoch(
    trunk: nn.Module,
    head: nn.Module,
    optimizer,
    params: list[nn.Parameter],
    chunk: Chunk,
    batch_size: int,
    gen: torch.Generator | None,
    *,
    memory=None,
    penalty=None,
) -> tuple[float, int, int]:
    """One pass over ``chunk`` in mini-batches, each a step of ``optimizer`` on the loss
    of the whole network (only ``params`` move).

    With a non-empty replay ``memory``, each mini-batch is joined by as many rows drawn
    from it (at most its size). ``penalty(params, grads)`` may adjust the gradients
    (L2-SP, EWC) before the step.

    Returns the weighted mean loss of the steps taken, the number of steps taken and
    the number skipped.
    """
    total, weight, taken, skipped = 0.0, 0.0, 0, 0
    for Xb, yb, wb in chunk.batches(batch_size, gen):
        n = yb.shape[0] if wb is None else float(wb.sum())
        if n == 0:
            continue
        if memory is not None and len(memory):
            Xm, ym = memory.sample(min(len(memory), len(yb)), gen)
            if wb is not None:
                wb = torch.cat([wb, wb.new_full((len(ym),), float(wb.mean()))])
            Xb, yb = torch.cat([Xb, Xm]), torch.cat([yb, ym])
        loss = weighted_loss(head(trunk(Xb)), yb, wb)
        grads = torch.autograd.grad(loss, params, materialize_grads=True)
        if penalty is not None:
            grads = penalty(params, grads)
        if apply_step(optimizer, params, grads, loss):
            total += float(loss.detach()) * n
            weight += n
            taken += 1
        else:
            skipped += 1
    return (total / weight if weight else float("nan")), taken, skipped


def fine_tune_head(
    head: nn.Module,
    optimizer,
    params: list[nn.Parameter],
    feats: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor | None,
    steps: int,
) -> int:
    """``steps`` full-batch steps of ``optimizer`` on the head alone, on fixed features.

    A plain ``nn.Linear`` head gets the closed-form cross-entropy gradient
    ``G = (softmax(z W^T + b) - onehot(y)) * w / sum(w)``, ``dW = G^T z``, ``db = sum G``,
    equal to autograd's but without its per-step overhead. Returns the number of steps
    skipped.
    """
    n = y.shape[0]
    scale = w / w.sum() if w is not None else feats.new_full((n,), 1.0 / n)
    skipped = 0
    W, b = getattr(head, "weight", None), getattr(head, "bias", None)
    closed_form = (
        type(head) is nn.Linear and len(params) == 2 and params[0] is W and params[1] is b
    )
    if closed_form:
        # Logits computed n x C (the fast layout for addmm), then softmax over the classes
        # on the transposed view: over a short first axis it vectorises over the samples,
        # which torch's CPU softmax over a short last axis does not.
        onehot_t = F.one_hot(y, W.shape[0]).to(feats.dtype).t()
        for _ in range(steps):
            with torch.no_grad():
                G_t = torch.softmax(torch.addmm(b, feats, W.t()).t(), dim=0)
                G_t = G_t.sub_(onehot_t).mul_(scale)
                grads = (G_t @ feats, G_t.sum(1))
            skipped += not apply_step(optimizer, params, grads)
        return skipped
    for _ in range(steps):
        loss = (F.cross_entropy(head(feats), y, reduction="none") * scale).sum()
        skipped += not gradient_step(loss, optimizer, params)
    return skipped


@torch.no_grad()
def features(trunk: nn.Module, chunk: Chunk, batch_size: int) -> torch.Tensor:
    """Trunk features of every row of ``chunk``, without a graph (callers set eval
    mode), computed :meth:`Chunk.slices` at a time."""
    return _joined([trunk(rows) for rows in chunk.slices(batch_size)])


@torch.no_grad()
def predict_chunk(trunk: nn.Module, head: nn.Module, chunk: Chunk, batch_size: int) -> np.ndarray:
    """Predicted class indices of every row of ``chunk`` (callers set eval mode).
    Rows requested whole stay on the device for the update that follows, so this runs
    under ``no_grad``, not ``inference_mode``, whose tensors autograd refuses."""
    parts = [head(trunk(rows)).argmax(1) for rows in chunk.slices(batch_size)]
    return _joined(parts).cpu().numpy()


def _joined(parts: list[torch.Tensor]) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def online_update(
    trunk: nn.Module,
    head: nn.Module,
    trunk_opt,
    head_opt,
    trunk_params: list[nn.Parameter],
    head_params: list[nn.Parameter],
    chunk: Chunk,
    *,
    batch_size: int,
    trunk_epochs: int,
    head_steps: int,
    gen: torch.Generator | None,
    memory=None,
    penalty=None,
) -> tuple[float, int]:
    """The online step of ``partial_fit``, in order:

    1. trunk update: ``trunk_epochs`` passes over the chunk in mini-batches, each a step
       of ``trunk_opt`` on the whole network's loss that moves the trunk only;
    2. head fine-tune: the trunk frozen and in eval mode, the chunk's features computed
       once, then ``head_steps`` full-chunk steps of ``head_opt`` on the head alone.

    A replay ``memory`` joins both: each trunk mini-batch gets as many replayed rows,
    and the head fine-tune runs on the chunk's features and as many replayed rows' (the
    replayed rows weighing as much as the chunk); the chunk is then offered to the
    memory. ``penalty`` adjusts the trunk's gradients.

    A step with a non-finite loss or gradient is skipped; if the update still leaves a
    weight that is not finite, the whole call is undone (weights and optimizer state).
    Returns the mean loss of the trunk steps and the number of skipped steps.
    """
    txn = Transaction(trunk_params + head_params, [trunk_opt, head_opt])
    loss, taken, skipped = float("nan"), 0, 0
    if trunk_epochs:
        trunk.train()
        head.train()
        for _ in range(trunk_epochs):
            loss, t, s = train_epoch(
                trunk,
                head,
                trunk_opt,
                trunk_params,
                chunk,
                batch_size,
                gen,
                memory=memory,
                penalty=penalty,
            )
            taken, skipped = taken + t, skipped + s
        trunk.eval()
        head.eval()
    if head_steps and (chunk.w is None or bool(chunk.w.sum() > 0)):
        feats, y, w = features(trunk, chunk, batch_size), chunk.y, chunk.w
        if memory is not None and len(memory):
            # As many replayed rows as the chunk has, weighing as much, as in the trunk steps.
            n = len(y)
            Xm, ym = memory.sample(min(len(memory), n), gen)
            m = len(ym)
            w = feats.new_ones(n) if w is None else w
            with torch.no_grad():
                feats = torch.cat([feats, trunk(Xm)])
            w = torch.cat([w, w.new_full((m,), float(w.sum()) / m)])
            y = torch.cat([y, ym])
        head.train()
        s = fine_tune_head(head, head_opt, head_params, feats, y, w, head_steps)
        taken, skipped = taken + head_steps - s, skipped + s
        head.eval()
    if not txn.finite():
        txn.rollback()
        loss, skipped = float("nan"), skipped + taken
    if memory is not None:
        offer_to_memory(memory, chunk, batch_size, gen)
    return loss, skipped


def offer_to_memory(memory, chunk: Chunk, batch_size: int, gen: torch.Generator) -> None:
    """Offer every row of ``chunk`` to the replay memory, :meth:`Chunk.slices` at a
    time."""
    start = 0
    for rows in chunk.slices(batch_size):
        memory.add(rows, chunk.y[start : start + len(rows)], gen)
        start += len(rows)


def forward(
    trunk: nn.Module, head: nn.Module, X: torch.Tensor, post=None, device=None
) -> torch.Tensor:
    """``post(head(trunk(X)))`` in inference mode, in slices that bound memory; each
    slice is copied to ``device`` (when given) just before its forward pass."""

    def run(rows):
        if device is not None and rows.device != device:
            rows = rows.to(device, non_blocking=True)
        return head(trunk(rows))

    with torch.inference_mode():
        if X.shape[0] <= FORWARD_CHUNK:
            z = run(X)
        else:
            z = torch.cat(
                [run(X[s : s + FORWARD_CHUNK]) for s in range(0, X.shape[0], FORWARD_CHUNK)]
            )
        return z if post is None else post(z)


def to_cpu(tree):
    """Every tensor in a nest of dicts, lists and tuples, on the CPU."""
    if isinstance(tree, torch.Tensor):
        return tree.detach().cpu()
    if isinstance(tree, dict):
        return {k: to_cpu(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_cpu(v) for v in tree)
    return tree


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the module's parameters and buffers."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}
