r"""``ModelFn``: the ε-function every sampler calls, built once per ``sample`` run.

    ε(x, t) = clip(guidance(network)(x, t, cond))

It holds the backbone (evaluated at the model's own x = s(t)·x_vp, its prediction converted to ε),
the conditioning split into ``positive`` and ``negative`` halves (a key ``negative_<k>`` is the
unconditional half of ``<k>``, as a negative prompt's states), the guidance, and the clipping bound
on x̂_0 (ε' = (x − α·clip(x̂_0, ±bound))/√(1−ᾱ)). It counts network evaluations per sample.

Samplers call it as ``eps_fn(x, t, rows=None)`` and ``eps_fn.pair(x, t, rows=None, raw=False)``, which
returns (ε giving x̂_0, ε to re-noise with): the same tensor unless the guidance re-noises with a second
ε (``renoise``, CFG++) or, with clipping, ``raw`` asks for the network's own ε.

A guidance is called once as ``guidance(network, schedule, backbone)`` and returns a guided
``eps(x, t, **cond)``; what it can do it declares as plain attributes, read here with these defaults:
``renoise = False`` (the guided function returns the pair (ε, ε_r)), ``zero_snr = False`` (it can guide
the first step from zero SNR, where the network answers x̂_0 in place of ε, which is x there), and
``second_network = False`` (it evaluates another backbone through ``network.of(backbone)``, counted as
network evaluations too).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .guidance.base import NEGATIVE
from .guidance.cfg import without_negatives
from .schedules import Schedule
from .tensors import bcast

__all__ = ["ModelFn", "Network", "split_cond", "take_rows", "finite"]


def split_cond(cond: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(positive, negative) halves of ``cond``: ``negative_<k>`` becomes ``negative[k]``."""
    cond = cond or {}
    return without_negatives(cond), {k[len(NEGATIVE) :]: v for k, v in cond.items() if k.startswith(NEGATIVE)}


def take_rows(cond: dict[str, Any], rows: Tensor, batch: int) -> dict[str, Any]:
    """Per-sample conditioning (tensors whose first dimension is the batch) restricted to ``rows``."""
    return {
        k: v[rows.to(v.device)] if isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == batch else v
        for k, v in cond.items()
    }


def finite(x: Tensor) -> bool:
    """No NaN or inf in x, in one reduction: both propagate through a sum (kept in ≥ float32, so fp16 cannot
    overflow it); an elementwise isfinite costs 25× more per step."""
    return bool(torch.isfinite(x.sum(dtype=torch.float64 if x.dtype == torch.float64 else torch.float32)))


class Network:
    """The counted prediction of one backbone, ``network(x, t, **cond)``: what a guidance wraps.

    ``network.of(other)`` is the same for a second backbone (autoguidance's weak model)."""

    def __init__(self, model_fn: "ModelFn", backbone: Any) -> None:
        self.model_fn, self.backbone = model_fn, backbone

    def __call__(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        return self.model_fn.evaluate_network(self.backbone, x, t, cond)

    def of(self, backbone: Any) -> "Network":
        """The counted prediction of ``backbone`` (a ``Backbone``) on the same schedule."""
        if not hasattr(backbone, "eps"):
            raise TypeError(f"a second network must be a backbone (with .eps), got {type(backbone).__name__}")
        return Network(self.model_fn, backbone)


class ModelFn:
    """ε(x, t, rows=None) of a backbone, guided, conditioned and clipped; ``nfe`` counts evaluations per sample."""

    def __init__(
        self,
        backbone: Any,
        schedule: Schedule,
        *,
        batch: int,
        cond: dict[str, Any] | None = None,
        guidance: Any = None,
        clip: float | None = None,
        deterministic: bool = False,
        grid: Tensor | None = None,
    ) -> None:
        self.backbone, self.schedule, self.batch, self.grid = backbone, schedule, batch, grid
        self.positive, self.negative = split_cond(cond)
        # a guidance reads both halves as given (negative_<k>); the network alone sees only the positive one
        self._cond = dict(cond or {}) if guidance is not None else self.positive
        self.guidance, self.bound, self.deterministic = guidance, clip, deterministic
        self.renoise = bool(getattr(guidance, "renoise", False))
        self.zero_snr = guidance is None or bool(getattr(guidance, "zero_snr", False))
        self.rows_done = self.calls = 0
        self._predict = "eps"  # "denoised" for the first step from zero SNR, where ε cannot tell x̂_0
        network = Network(self, backbone)
        self._guided = network if guidance is None else guidance(network, schedule, backbone)

    @property
    def nfe(self) -> int | float:
        """Network evaluations per sample: a doubled (guided) batch counts twice."""
        n = self.rows_done / self.batch
        return int(n) if n.is_integer() else n

    def evaluate_network(self, backbone: Any, x: Tensor, t: Tensor, cond: dict[str, Any]) -> Tensor:
        """One counted call of ``backbone`` at the model's x = s(t)·x_vp: ε, or x̂_0 on the zero-SNR step."""
        self.rows_done, self.calls = self.rows_done + x.shape[0], self.calls + 1
        s = self.schedule
        model_x = x if s.variance_preserving else x * bcast(s.scale(t), x).to(x.dtype)
        return getattr(backbone, self._predict)(model_x, t, s, **cond)

    def _guided_call(self, x: Tensor, t: Tensor, rows: Tensor | None) -> Any:
        cond = self._cond
        if not self.deterministic:
            return self._guided(x, t, **(cond if rows is None else take_rows(cond, rows, self.batch)))
        index = torch.arange(self.batch, device=x.device) if rows is None else rows
        parts = [
            self._guided(x[i : i + 1], t[i : i + 1], **take_rows(cond, index[i : i + 1], self.batch))
            for i in range(x.shape[0])
        ]
        return tuple(torch.cat(p) for p in zip(*parts)) if self.renoise else torch.cat(parts)

    def _checked(self, out: Tensor, x: Tensor, t: Tensor) -> Tensor:
        if out.shape != x.shape:
            raise ValueError(f"model output {tuple(out.shape)} does not match the shape of x {tuple(x.shape)}")
        if not finite(out):
            at = float(t.reshape(-1)[0])
            where = ""
            if self.grid is not None:
                step = max(1, min(int((self.grid >= at - 1e-12).sum()), self.grid.numel() - 1))
                where = f"step {step} of {self.grid.numel() - 1}, "
            raise ValueError(
                f"the model returned NaN or infinite values at t={at:.4g} ({where}network call {self.calls})"
            )
        return out

    def _clip(self, x: Tensor, t: Tensor, e: Tensor) -> Tensor:
        alpha, std = bcast(self.schedule.alpha(t), x), bcast(self.schedule.std(t), x)
        return (x - alpha * ((x - std * e) / alpha).clamp(-self.bound, self.bound)) / std

    def pair(self, x: Tensor, t: Tensor, rows: Tensor | None = None, raw: bool = False) -> tuple[Tensor, Tensor]:
        """(ε giving x̂_0, ε to re-noise with): the guidance's second ε where it re-noises (CFG++), else the
        first one, or with clipping and ``raw`` the unclipped one."""
        out = self._guided_call(x, t, rows)
        e, e_r = (self._checked(o, x, t) for o in out) if self.renoise else (self._checked(out, x, t),) * 2
        if self.bound is None:
            return e, e_r
        clipped = self._clip(x, t, e)
        return clipped, (e_r if self.renoise or raw else clipped)

    def __call__(self, x: Tensor, t: Tensor, rows: Tensor | None = None) -> Tensor:
        return self.pair(x, t, rows)[0]

    def denoised(self, x: Tensor, t: Tensor) -> Tensor:
        """x̂_0 from the network's own x̂_0 (not from ε), guided and clipped: the first step from zero SNR."""
        if not self.zero_snr:
            raise ValueError(
                f"{type(self.guidance).__name__} guidance works on ε, and at zero SNR (t = "
                f"{float(t.reshape(-1)[0]):g}) ε = x says nothing of x̂_0; use cfg (rescale in the "
                "model's space), pag or autoguidance, or start the grid below zero SNR"
            )
        self._predict = "denoised"
        try:
            out = self._guided_call(x, t, None)
        finally:
            self._predict = "eps"
        m = self._checked(out[0] if self.renoise else out, x, t)
        return m if self.bound is None else m.clamp(-self.bound, self.bound)
