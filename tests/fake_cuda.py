"""A CPU stand-in for a GPU: tensors "on cuda" compute on the CPU, but mixing them as CUDA refuses raises.

Inside ``FakeCuda()``, a tensor is on the fake GPU when made with ``device="cuda"``, moved there with
``.to``/``.cuda()``, or computed from one; ``.device`` reports ``cuda:0`` for it. Ops that CUDA refuses raise
RuntimeError: a CPU tensor of one or more dimensions meeting a GPU tensor (CPU 0-dim tensors may mix, and a
GPU tensor may be indexed with CPU indices, as on CUDA). ``to_fake_cuda(module)`` puts a module's
parameters and buffers there. CI has no GPU; this finds the device mistakes a GPU run would.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

CUDA, CPU = torch.device("cuda", 0), torch.device("cpu")
_TAG = "_fake_cuda"
_NEW = {"new_zeros", "new_ones", "new_full", "new_empty", "new_tensor"}
_LIKE = {"zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like", "randint_like"}
_CROSS = {"copy_", "__setitem__"}  # copies between devices are allowed


def on_cuda(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and getattr(t, _TAG, False)


def _tag(out: Any, cuda: bool) -> Any:
    for t in tree_flatten(out)[0]:
        if isinstance(t, torch.Tensor):
            setattr(t, _TAG, cuda)
    return out


def _is_cuda_device(d: Any) -> bool:
    return isinstance(d, (str, torch.device)) and torch.device(d).type == "cuda"


def to_fake_cuda(module: torch.nn.Module) -> torch.nn.Module:
    """Marks a module's parameters and buffers as on the fake GPU."""
    for t in [*module.parameters(), *module.buffers()]:
        setattr(t, _TAG, True)
    return module


class FakeCuda(TorchFunctionMode):
    """The mode: ``with FakeCuda(): ...`` (see the module's docstring)."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", "")
        if name == "__get__":  # a property of a tensor
            prop = getattr(getattr(func, "__self__", None), "__name__", "")
            if prop == "device":
                return CUDA if on_cuda(args[0]) else CPU
            if prop == "is_cuda":
                return on_cuda(args[0])
            out = func(*args, **kwargs)
            return _tag(out, True) if isinstance(out, torch.Tensor) and on_cuda(args[0]) else out
        if name in ("to", "cuda", "cpu"):
            return self._move(func, name, args, kwargs)
        target = kwargs.get("device")
        if target is not None:
            kwargs["device"] = CPU
            return _tag(func(*args, **kwargs), _is_cuda_device(target))
        if name in _NEW or name in _LIKE:
            return _tag(func(*args, **kwargs), on_cuda(args[0]))
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        cuda = any(on_cuda(t) for t in tensors)
        if cuda and name not in _CROSS:
            indexing_gpu = name == "__getitem__" and on_cuda(args[0])  # CPU indices may index a GPU tensor
            bad = [tuple(t.shape) for t in ([] if indexing_gpu else tensors) if not on_cuda(t) and t.dim() > 0]
            if bad:
                raise RuntimeError(f"fake cuda: {name} mixes cuda tensors with cpu tensors of shapes {bad}")
        out = func(*args, **kwargs)
        if name in _CROSS:
            return out
        return _tag(out, cuda) if cuda else out

    @staticmethod
    def _move(func: Any, name: str, args: tuple, kwargs: dict) -> Any:
        src = args[0]
        if name == "cuda":
            dest = True
        elif name == "cpu":
            dest = False
        else:
            dest = None
            for a in [*args[1:], kwargs.get("device"), kwargs.get("other")]:
                if isinstance(a, torch.Tensor):
                    dest = on_cuda(a)
                elif isinstance(a, (str, torch.device)) and not isinstance(a, torch.dtype):
                    try:
                        dest = _is_cuda_device(a)
                    except (RuntimeError, TypeError):
                        pass
            args = tuple(
                CPU if _is_cuda_device(a) else (a.dtype if isinstance(a, torch.Tensor) else a) if i else a
                for i, a in enumerate(args)
            )
            if "device" in kwargs:
                kwargs["device"] = CPU
        out = func(*args, **kwargs) if name == "to" else src.clone() if dest else func(src)
        if dest is None:
            return _tag(out, on_cuda(src)) if out is not src else out
        if dest != on_cuda(src) and out is src:
            out = src.clone()
        return _tag(out, dest)
