r"""Pseudo numerical methods (Liu et al. 2022): PNDM and PLMS, linear multistep on ε with the DDIM transfer.

The transfer φ(x, ε, s, u) = √ᾱ_u·x̂_0 + √(1−ᾱ_u)·ε with x̂_0 = (x − √(1−ᾱ_s)·ε)/√ᾱ_s is the DDIM step
(the paper's eq. 9). Steps past the warm-up take ε' from the last four ε's with Adams–Bashforth weights
for equal steps, ε' = (55ε_i − 59ε_{i−1} + 37ε_{i−2} − 9ε_{i−3})/24, and x_{i+1} = φ(x_i, ε', t_i, t_{i+1}).

``pndm``: the first three steps are pseudo Runge–Kutta (with m the midpoint of t_i and t_{i+1}):
ε₁ = ε(x, t_i), ε₂ = ε(φ(x, ε₁, t_i, m), m), ε₃ = ε(φ(x, ε₂, t_i, m), m), ε₄ = ε(φ(x, ε₃, t_i, t_{i+1}), t_{i+1}),
ε' = (ε₁ + 2ε₂ + 2ε₃ + ε₄)/6; NFE = N + 9 (4 per warm-up step).
A warm-up step into t = 0, where ε is undefined (N ≤ 3 for pndm, N = 1 for plms), is the explicit midpoint
rule ε' = ε(φ(x, ε₁, t_i, m), m) instead (2 evaluations).
``plms``: the first step is a pseudo improved Euler step, ε' = (ε(x_0, t_0) + ε(φ(x_0, ε, t_0, t_1), t_1))/2,
the next two use the 2- and 3-step weights (3ε_i − ε_{i−1})/2 and (23ε_i − 16ε_{i−1} + 5ε_{i−2})/12; NFE = N + 1.
Both are diffusers' ``PNDMScheduler`` (``skip_prk_steps`` False and True).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor

from ..schedules import Schedule
from .base import SAMPLERS, Callback, EpsFn, NoiseSampler, denoise, report, times_like

AB_WEIGHTS = ([1.0], [3 / 2, -1 / 2], [23 / 12, -16 / 12, 5 / 12], [55 / 24, -59 / 24, 37 / 24, -9 / 24])


def transfer(x: Tensor, eps: Tensor, a_s: float, a_u: float) -> Tensor:
    """φ(x, ε, s, u) = √ᾱ_u·(x − √(1−ᾱ_s)·ε)/√ᾱ_s + √(1−ᾱ_u)·ε: the DDIM step."""
    return denoise(x, eps, a_s).mul_(math.sqrt(a_u)).add_(eps, alpha=math.sqrt(1 - a_u))


def combined(eps_hist: list[Tensor], order: int) -> Tensor:
    """Σ_j w_j·ε_{i−j} with the Adams–Bashforth weights for equal steps of ``order`` (eps_hist newest first)."""
    return weighted(eps_hist, AB_WEIGHTS[order - 1])


def weighted(eps_hist: list[Tensor], weights: Sequence[float]) -> Tensor:
    """Σ_j w_j·ε_{i−j} over the first len(weights) entries of ``eps_hist`` (newest first)."""
    out = eps_hist[0] * weights[0]
    for w, e in zip(weights[1:], eps_hist[1:]):
        out.add_(e, alpha=w)
    return out


def _pseudo_numerical(
    eps_fn: EpsFn, x: Tensor, grid: Tensor, schedule: Schedule, callback: Callback | None, warmup: str
) -> Tensor:
    ab = schedule.alpha_bar(grid).tolist()
    eps_hist: list[Tensor] = []  # ε at each x_i, newest first
    for i in range(len(ab) - 1):
        a_s, a_u = ab[i], ab[i + 1]
        eps = eps_fn(x, times_like(grid[i], x))
        eps_hist = [eps] + eps_hist[:3]
        if warmup == "prk" and i < 3 or warmup == "plms" and i == 0:
            mid = (grid[i] + grid[i + 1]) / 2
            a_m = schedule.alpha_bar(mid).item()
            if a_u >= 1:  # ε at t = 0 is undefined: the explicit midpoint rule instead
                step_eps = eps_fn(transfer(x, eps, a_s, a_m), times_like(mid, x))
            elif warmup == "prk":
                e2 = eps_fn(transfer(x, eps, a_s, a_m), times_like(mid, x))
                e3 = eps_fn(transfer(x, e2, a_s, a_m), times_like(mid, x))
                e4 = eps_fn(transfer(x, e3, a_s, a_u), times_like(grid[i + 1], x))
                step_eps = (eps + 2 * e2 + 2 * e3 + e4) / 6
            else:
                step_eps = (eps + eps_fn(transfer(x, eps, a_s, a_u), times_like(grid[1], x))) / 2
        else:
            step_eps = combined(eps_hist, len(eps_hist))
        x_new = transfer(x, step_eps, a_s, a_u)
        report(callback, i, grid, x_new, lambda: denoise(x, eps, a_s))
        x = x_new
    return x


@SAMPLERS.register("pndm", spacing="leading")
def pndm(
    eps_fn: EpsFn,
    x: Tensor,
    grid: Tensor,
    schedule: Schedule,
    *,
    noise_sampler: NoiseSampler,
    callback: Callback | None = None,
) -> Tensor:
    """PNDM: three pseudo Runge–Kutta steps, then 4-step pseudo linear multistep; NFE = steps + 9 (4·steps − 2
    for steps ≤ 3)."""
    return _pseudo_numerical(eps_fn, x, grid, schedule, callback, "prk")


@SAMPLERS.register("plms", spacing="leading")
def plms(
    eps_fn: EpsFn,
    x: Tensor,
    grid: Tensor,
    schedule: Schedule,
    *,
    noise_sampler: NoiseSampler,
    callback: Callback | None = None,
) -> Tensor:
    """PLMS: a pseudo improved Euler step, then pseudo linear multistep of order ≤ 4; NFE = steps + 1."""
    return _pseudo_numerical(eps_fn, x, grid, schedule, callback, "plms")
