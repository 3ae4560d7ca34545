r"""Euler–Maruyama for the reverse VP SDE (Song et al. 2021).

Forward dx = −½β(t)x dt + √β(t) dW, score ∇log p_t = −ε/√(1−ᾱ). Reverse-time step from s to u < s:

    x_u = x_s + Δ·(½x_s − ε/√(1−ᾱ_s)) + √Δ·z,   Δ = ∫_u^s β = log ᾱ_u − log ᾱ_s,

i.e. β(s)·(s−u) with β averaged over the step, exact for the piecewise-constant β of discrete
schedules. No noise on the last step. NFE = N.
"""

from __future__ import annotations

from torch import Tensor

from ..schedules import Schedule
from .base import SAMPLERS, Callback, EpsFn, NoiseSampler, denoise, report, times_like


@SAMPLERS.register("euler-maruyama", spacing="uniform")
def euler_maruyama(
    eps_fn: EpsFn,
    x: Tensor,
    grid: Tensor,
    schedule: Schedule,
    *,
    noise_sampler: NoiseSampler,
    callback: Callback | None = None,
) -> Tensor:
    """Euler–Maruyama on the reverse VP SDE dx = [f − g²∇log p]dt + g dW̄; NFE = steps."""
    log_ab = schedule.log_alpha_bar(grid)
    ab, log_ab = log_ab.exp().tolist(), log_ab.tolist()
    n = len(ab) - 1
    for i in range(n):
        delta = log_ab[i + 1] - log_ab[i]
        eps = eps_fn(x, times_like(grid[i], x))
        x_new = x + delta * (0.5 * x - eps / (1 - ab[i]) ** 0.5)
        if i < n - 1:
            x_new = x_new + delta**0.5 * noise_sampler(x)
        report(callback, i, grid, x_new, lambda: denoise(x, eps, ab[i]))
        x = x_new
    return x
