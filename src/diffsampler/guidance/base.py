"""What guidance methods share: the registry, the contract, argument checks and the guidance interval."""

from __future__ import annotations

import math
from typing import Any, Callable, Protocol

import torch
from torch import Tensor

from ..registry import Registry
from ..schedules import Schedule
from ..tensors import check_labels

__all__ = [
    "GUIDANCE",
    "Guidance",
    "CondEpsFn",
    "NEGATIVE",
    "check_scale",
    "check_interval",
    "inside",
    "labels_of",
    "on_denoising_eps",
]

CondEpsFn = Callable[..., Tensor]
NEGATIVE = "negative_"  # cond[NEGATIVE + k] is k's unconditional half (a negative prompt's states)


class Guidance(Protocol):
    """``guidance(eps, schedule, backbone) -> guided eps(x, t, **cond)``, wrapping the counted network ``eps``.

    What a guidance can do it declares as plain attributes (a plugin without them gets the defaults):
    ``renoise`` (False): the guided function returns (ε giving x̂_0, ε to re-noise with), as CFG++;
    ``zero_snr`` (False): it can guide the first step from zero SNR, where ``eps`` answers x̂_0 in place of ε;
    ``second_network`` (False): it evaluates another backbone through ``eps.of(backbone)``, counted too.
    """

    renoise: bool
    zero_snr: bool
    second_network: bool

    def __call__(self, eps: CondEpsFn, schedule: Schedule, backbone: Any = None) -> CondEpsFn: ...


# cli: built by ``--guidance NAME`` (compose takes other guidances, so only Python builds it);
# cli_models: options the command line fills with a model, from a folder or the bundled one named;
# labels: whether it needs class labels (--class)
GUIDANCE: Registry[Any] = Registry("guidance", "guidance", meta={"cli": True, "cli_models": {}, "labels": True})


def check_scale(name: str, scale: float) -> float:
    """A guidance scale: a finite number ≥ 0."""
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not 0 <= scale < math.inf:
        raise ValueError(f"{name} scale must be a finite number ≥ 0, got {scale!r}")
    return float(scale)


def check_interval(interval: tuple[float, float] | None) -> tuple[float, float] | None:
    if interval is None:
        return None
    lo, hi = (float(v) for v in interval)
    if not 0 <= lo < hi <= 1:
        raise ValueError(f"interval must be (lo, hi) with 0 ≤ lo < hi ≤ 1 in continuous time, got {interval!r}")
    return lo, hi


def inside(t: Tensor, interval: tuple[float, float] | None) -> Tensor:
    """Per-sample mask of times where guidance applies (Kynkäänniemi et al. 2024: lo < t ≤ hi)."""
    if interval is None:
        return torch.ones_like(t, dtype=torch.bool)
    return (t > interval[0]) & (t <= interval[1])


def labels_of(name: str, cond: dict[str, Any], key: str, batch: int, device: torch.device) -> Tensor:
    """Per-sample labels [B] from ``cond[key]`` (a tensor or one int), or a clear error."""
    if cond.get(key) is None:
        raise ValueError(f"{name} guidance needs labels: pass cond={{{key!r}: labels}} (one int or one per sample)")
    return check_labels(cond[key], batch, None, device=device)


def on_denoising_eps(eps: CondEpsFn, apply: Callable[[Tensor, Tensor, Tensor], Tensor]) -> CondEpsFn:
    """``eps`` with ``apply(x, t, ε)`` on the ε that gives x̂_0; of a CFG++ pair (ε, ε_r) the re-noising ε_r is kept."""

    def wrapped(x: Tensor, t: Tensor, **cond: Any) -> Tensor | tuple[Tensor, Tensor]:
        out = eps(x, t, **cond)
        if isinstance(out, tuple):
            return apply(x, t, out[0]), out[1]
        return apply(x, t, out)

    return wrapped
