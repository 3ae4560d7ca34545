r"""Tools on noise-level lists, as ComfyUI's sigma nodes offer them: split, concatenate, set first/last, extend.

A list is a strictly decreasing 1-D tensor of levels: grid times t, or EDM σ = √((1−ᾱ)/ᾱ) (the tools do not care
which); ``times_from_sigmas`` and ``sigmas_from_times`` convert between the two on a schedule, so that a
published σ list walks any sampler (``sample(grid=times_from_sigmas(schedule, sigmas))``, ``--sigmas`` on the
command line).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .base import Schedule
from .grids import check_grid

__all__ = ["times_from_sigmas", "sigmas_from_times", "split", "concatenate", "set_first", "set_last", "extend"]


def _levels(levels: Tensor | Sequence[float], what: str = "levels") -> Tensor:
    x = torch.as_tensor(levels, dtype=torch.float64)
    if x.ndim != 1 or x.numel() < 2 or not torch.isfinite(x).all():
        raise ValueError(f"{what} must be at least two finite numbers, got {x.tolist()}")
    if not (x[1:] < x[:-1]).all():
        raise ValueError(f"{what} must decrease strictly, got {[round(v, 6) for v in x.tolist()]}")
    return x


def times_from_sigmas(schedule: Schedule, sigmas: Tensor | Sequence[float]) -> Tensor:
    """The grid whose σ(t_k) are ``sigmas`` (σ = 0 is t = 0); a σ above the schedule's σ(1) is an error."""
    s = _levels(sigmas, "sigmas")
    top = schedule.sigma(1.0).item()
    if s[0].item() > top * (1 + 1e-9):
        raise ValueError(f"sigma {s[0].item():.6g} is above this schedule's σ_max = {top:.6g}")
    if s[-1].item() < 0:
        raise ValueError(f"sigmas must be ≥ 0, got {s[-1].item():.6g}")
    t = torch.where(s > 0, schedule.t_from_sigma(s.clamp(min=1e-300)), torch.zeros_like(s))
    return check_grid(t.clamp(0.0, 1.0))


def sigmas_from_times(schedule: Schedule, grid: Tensor | Sequence[float]) -> Tensor:
    """σ(t) = √((1−ᾱ(t))/ᾱ(t)) at each time of a grid."""
    return schedule.sigma(check_grid(torch.as_tensor(grid, dtype=torch.float64)))


def split(levels: Tensor | Sequence[float], step: int) -> tuple[Tensor, Tensor]:
    """(levels[:step+1], levels[step:]): the first ``step`` steps and the rest, sharing the level between them."""
    x = _levels(levels)
    if not 0 < step < x.numel() - 1:
        raise ValueError(f"split at step {step}: must be between 1 and {x.numel() - 2} for {x.numel() - 1} steps")
    return x[: step + 1], x[step:]


def concatenate(first: Tensor | Sequence[float], second: Tensor | Sequence[float]) -> Tensor:
    """``first`` then ``second``, their shared level once; ``second`` must start at or below ``first``'s end."""
    a, b = _levels(first, "first"), _levels(second, "second")
    if b[0] > a[-1]:
        raise ValueError(f"second starts at {b[0].item():.6g}, above first's last level {a[-1].item():.6g}")
    return torch.cat([a, b[1:] if b[0] == a[-1] else b])


def set_first(levels: Tensor | Sequence[float], value: float) -> Tensor:
    """The list with its first level replaced by ``value`` (it must stay above the second)."""
    x = _levels(levels).clone()
    x[0] = value
    return _levels(x, f"levels with first = {value}")


def set_last(levels: Tensor | Sequence[float], value: float) -> Tensor:
    """The list with its last level replaced by ``value`` (it must stay below the one before)."""
    x = _levels(levels).clone()
    x[-1] = value
    return _levels(x, f"levels with last = {value}")


def extend(levels: Tensor | Sequence[float], between: int) -> Tensor:
    """``between`` more levels evenly spaced inside every step: N steps become N·(between + 1)."""
    x = _levels(levels)
    if isinstance(between, bool) or not isinstance(between, int) or between < 0:
        raise ValueError(f"between must be an integer ≥ 0, got {between!r}")
    w = torch.arange(between + 1, dtype=torch.float64) / (between + 1)
    inner = x[:-1, None] + w[None, :] * (x[1:] - x[:-1])[:, None]
    return torch.cat([inner.reshape(-1), x[-1:]])
