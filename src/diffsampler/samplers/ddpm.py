r"""Ancestral sampling (Ho et al. 2020) on any decreasing grid.

Between grid times s > u the step's β = 1 − ᾱ_u/ᾱ_s (the respaced chain's beta), and

    x_u = √ᾱ_u·β/(1−ᾱ_s)·x̂_0 + √(1−β)·(1−ᾱ_u)/(1−ᾱ_s)·x_s + √v·z,

with v = β̃ = β(1−ᾱ_u)/(1−ᾱ_s) (``small``) or v = β (``large``). The last step adds no noise
unless ``final_noise=True``, as loops that add σ_t·z at every t, t = 0 included, do (with
``large``, σ_t = √β_t: the classic tutorial ``p_sample``). NFE = N (one evaluation per step).
"""

from __future__ import annotations

from torch import Tensor

from ..schedules import Schedule
from .base import SAMPLERS, Callback, EpsFn, NoiseSampler, denoise, report, times_like

VARIANCES = ("small", "large")


@SAMPLERS.register("ddpm", discrete=True)
def ddpm(
    eps_fn: EpsFn,
    x: Tensor,
    grid: Tensor,
    schedule: Schedule,
    *,
    noise_sampler: NoiseSampler,
    callback: Callback | None = None,
    variance: str = "small",
    final_noise: bool = False,
) -> Tensor:
    """Ancestral DDPM: posterior mean plus β̃ (``small``) or β (``large``) noise; NFE = steps."""
    if variance not in VARIANCES:
        raise ValueError(f"unknown variance {variance!r}; known: {', '.join(VARIANCES)}")
    ab = schedule.alpha_bar(grid).tolist()
    n = len(ab) - 1
    for i in range(n):
        a_s, a_u = ab[i], ab[i + 1]
        eps = eps_fn(x, times_like(grid[i], x))
        x0 = denoise(x, eps, a_s)
        beta = 1 - a_s / a_u
        x_new = (a_u**0.5 * beta / (1 - a_s)) * x0 + ((1 - beta) ** 0.5 * (1 - a_u) / (1 - a_s)) * x
        if i < n - 1 or final_noise:
            v = beta * (1 - a_u) / (1 - a_s) if variance == "small" else beta
            x_new = x_new + v**0.5 * noise_sampler(x)
        x = x_new
        report(callback, i, grid, x, x0)
    return x
