"""An accelerator simulated on the CPU, to test skocl's device code without a GPU.

Inside :func:`simulated_device`, tensors put on the ``meta`` device (``.to("meta")``,
``torch.zeros(..., device="meta")``) are CPU tensors wrapped in :class:`DeviceTensor`,
which reports ``device="meta"``, so the library's ``device="meta"`` code path is the one
it takes for ``device="cuda"``. A dispatch mode runs every op on the wrapped CPU data and
enforces CUDA's placement rules:

* an op that mixes host and device tensors fails, as on CUDA. The exceptions are CUDA's:
  0-dim host tensors (scalars), host index tensors for indexing a device tensor, and
  ``copy_`` between the two;
* ``.numpy()`` on a device tensor fails (it is a tensor subclass), while ``.item()``
  and ``.tolist()`` read it back;
* every host-to-device and device-to-host copy is recorded in a :class:`Ledger` (bytes,
  and the number of scalars read back, the synchronisations).

It checks where tensors live and what crosses; it says nothing about CUDA kernels,
streams or CUDA's random generators, which only a real GPU run checks.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch.optim import optimizer
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves, tree_map

DEVICE = torch.device("meta")
_aten = torch.ops.aten
# Ops that index a device tensor with index tensors that may live on the host.
_HOST_INDICES_OK = {_aten.index.Tensor, _aten.index_put.default, _aten.index_put_.default}


class DeviceTensor(torch.Tensor):
    """A CPU tensor (``elem``) that says it lives on the simulated device."""

    elem: torch.Tensor

    @staticmethod
    def __new__(cls, elem: torch.Tensor):
        out = torch.Tensor._make_wrapper_subclass(
            cls,
            elem.shape,
            strides=elem.stride(),
            storage_offset=elem.storage_offset(),
            dtype=elem.dtype,
            device=DEVICE,
            requires_grad=elem.requires_grad,
        )
        out.elem = elem
        return out

    def __repr__(self) -> str:
        return f"DeviceTensor({self.elem!r})"

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        raise RuntimeError(f"{func} on the simulated device outside simulated_device()")


@dataclass
class Ledger:
    """What crossed between host and device."""

    h2d_bytes: int = 0
    d2h_bytes: int = 0
    scalars_read: int = 0
    h2d_ops: list = field(default_factory=list)

    def reset(self) -> None:
        self.h2d_bytes = self.d2h_bytes = self.scalars_read = 0
        self.h2d_ops.clear()


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _on_device(device) -> bool:
    return device is not None and torch.device(device).type == DEVICE.type


class _Mode(TorchDispatchMode):
    def __init__(self, ledger: Ledger) -> None:
        super().__init__()
        self.ledger = ledger

    def _h2d(self, func, t: torch.Tensor) -> None:
        self.ledger.h2d_bytes += _nbytes(t)
        self.ledger.h2d_ops.append((str(func), tuple(t.shape)))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        on_device = [t for t in tensors if isinstance(t, DeviceTensor)]
        if func.overloadpacket in (_aten.to, _aten._to_copy):
            target = kwargs.get("device") or next(
                (a for a in args[1:] if isinstance(a, torch.device)), None
            )
            if target is not None:
                return self._move(args[0], torch.device(target), args, kwargs)
        wants_device = _on_device(kwargs.get("device"))
        if not on_device and not wants_device:
            return func(*args, **kwargs)  # a host op

        if func is _aten._local_scalar_dense.default:
            self.ledger.scalars_read += 1
        elif func is _aten.copy_.default:
            dst, src = args[0], args[1]
            if isinstance(dst, DeviceTensor) and not isinstance(src, DeviceTensor):
                self._h2d(func, src)
            elif isinstance(src, DeviceTensor) and not isinstance(dst, DeviceTensor):
                self.ledger.d2h_bytes += _nbytes(src)
        elif on_device:
            self._check_placement(func, args, kwargs, tensors)

        unwrapped = {id(t.elem): t for t in on_device}

        def unwrap(x):
            return x.elem if isinstance(x, DeviceTensor) else x

        if wants_device:
            kwargs = {**kwargs, "device": torch.device("cpu")}
        out = func(*tree_map(unwrap, args), **tree_map(unwrap, kwargs))
        if kwargs.get("device") is not None and not wants_device:
            return out  # made on the host

        def wrap(x):
            if not isinstance(x, torch.Tensor):
                return x
            # In-place ops return their input: hand back its wrapper, not a new one.
            same = unwrapped.get(id(x))
            return DeviceTensor(x) if same is None else same

        return tree_map(wrap, out)

    def _move(self, src: torch.Tensor, target: torch.device, args, kwargs):
        """``src.to(target)`` (and ``dtype``): a copy whenever it crosses, as on CUDA."""
        dtype = kwargs.get("dtype") or next(
            (a for a in args[1:] if isinstance(a, torch.dtype)), src.dtype
        )
        there = isinstance(src, DeviceTensor)
        data = src.elem if there else src
        moved = data.to(dtype=dtype, copy=there != _on_device(target) or dtype != src.dtype)
        if _on_device(target):
            if there and moved is data:
                return src
            if not there:
                self._h2d("to", src)
            return DeviceTensor(moved)
        if there:
            self.ledger.d2h_bytes += _nbytes(src)
        return moved

    def _check_placement(self, func, args, kwargs, tensors) -> None:
        if func in _HOST_INDICES_OK:
            target, values = args[0], args[2:3]
            if not isinstance(target, DeviceTensor):
                raise RuntimeError(
                    f"{func}: indices on the device, indexed tensor on the host "
                    "(CUDA: indices should be either on cpu or on the same device)"
                )
            for t in args[1]:
                if t is not None and not isinstance(t, DeviceTensor):
                    self._h2d(func, t)  # CUDA copies host indices across
            tensors = [target, *[v for v in values if isinstance(v, torch.Tensor)]]
        host = [t for t in tensors if not isinstance(t, DeviceTensor) and t.dim() > 0]
        if host:
            shapes = [tuple(t.shape) for t in host]
            raise RuntimeError(
                f"{func}: expected all tensors to be on the same device, but found host "
                f"tensors of shapes {shapes} mixed with device tensors"
            )


class _AsOnCuda(TorchFunctionMode):
    """What the dispatch mode cannot see: ``torch.tensor(data, device="meta")`` makes an
    empty meta tensor without reading ``data``, and ``.tolist()`` refuses subclasses.
    On CUDA the one copies ``data`` across and the other reads the tensor back, and so
    do these."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.tensor, torch.as_tensor) and _on_device(kwargs.get("device")):
            host = func(*args, **{**kwargs, "device": "cpu"})
            return host.to(DEVICE)
        if func is torch.Tensor.tolist and isinstance(args[0], DeviceTensor):
            return args[0].cpu().tolist()
        return func(*args, **kwargs)


@contextlib.contextmanager
def simulated_device():
    """Run the block with the simulated device; yields its :class:`Ledger`."""
    ledger = Ledger()
    supported = optimizer._get_fused_kernels_supported_devices
    # torch's fused optimizers run on the CPU data, as they would on CUDA.
    optimizer._get_fused_kernels_supported_devices = lambda: [*supported(), DEVICE.type]
    try:
        with _AsOnCuda(), _Mode(ledger):
            yield ledger
    finally:
        optimizer._get_fused_kernels_supported_devices = supported


def on_device(t: torch.Tensor) -> bool:
    """Whether ``t`` lives on the simulated device."""
    return isinstance(t, DeviceTensor)
