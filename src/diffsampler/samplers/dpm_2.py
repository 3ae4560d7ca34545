r"""DPM-Solver-2 in EDM's σ (k-diffusion's ``sample_dpm_2`` and ``sample_dpm_2_ancestral``; Lu et al. 2022).

In y = x/√ᾱ, σ = √((1−ᾱ)/ᾱ), d(y, σ) = (y − D(y; σ))/σ, a step from σ_s to σ_u evaluates at the
geometric midpoint σ_m = √(σ_s·σ_u):

    y' = y + (σ_m − σ_s)·d(y, σ_s),   y_u = y + (σ_u − σ_s)·d(y', σ_m),

with an Euler step into σ = 0 (so NFE = 2N − 1 on grids ending at t = 0). ``dpm-2`` takes EDM's churn
(σ_s raised to σ̂ first, as ``heun``); ``dpm-2-ancestral`` steps to σ_down and adds σ_up·s_noise·z
(σ_down, σ_up as ``euler-ancestral``; η = 0 is ``dpm-2`` without churn).
"""

from __future__ import annotations

import math

from torch import Tensor

from ..schedules import Schedule
from .base import SAMPLERS, Callback, Denoiser, EpsFn, NoiseSampler
from .euler_ancestral import walk_ancestral
from .heun import walk_churned


def dpm2_step(D: Denoiser, y: Tensor, s: float, u: float) -> tuple[Tensor, Tensor]:
    """One DPM-Solver-2 step of dy/dσ = (y − D)/σ from σ = s to u (Euler into u = 0); returns (y_u, D(y; s))."""
    d0 = D(y, s)
    d = (y - d0) / s
    if u == 0:
        return y + (u - s) * d, d0
    m = math.exp(0.5 * (math.log(s) + math.log(u)))
    y2 = y + (m - s) * d
    return y + (u - s) * (y2 - D(y2, m)) / m, d0


@SAMPLERS.register("dpm-2")
def dpm_2(
    eps_fn: EpsFn,
    x: Tensor,
    grid: Tensor,
    schedule: Schedule,
    *,
    noise_sampler: NoiseSampler,
    callback: Callback | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
) -> Tensor:
    """DPM-Solver-2 with the midpoint in log σ, and EDM's churn (s_churn = 0: deterministic); NFE = 2·steps − 1."""
    return walk_churned(dpm2_step, eps_fn, x, grid, schedule, noise_sampler, callback, s_churn, s_tmin, s_tmax, s_noise)


@SAMPLERS.register("dpm-2-ancestral")
def dpm_2_ancestral(
    eps_fn: EpsFn,
    x: Tensor,
    grid: Tensor,
    schedule: Schedule,
    *,
    noise_sampler: NoiseSampler,
    callback: Callback | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
) -> Tensor:
    """DPM-Solver-2 down to σ_down, then fresh noise up to σ_{i+1}; NFE = 2·steps − 1."""
    return walk_ancestral(dpm2_step, eps_fn, x, grid, schedule, noise_sampler, callback, eta, s_noise)
