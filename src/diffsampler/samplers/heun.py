r"""Heun's 2nd-order method on the PF-ODE with EDM's stochastic churn (Karras et al. 2022, Alg. 2).

As ``euler``: y = x/√ᾱ, D(y; σ) = x̂_0, d = (y − D)/σ; churn raises σ_i to σ̂ = σ_i(1 + γ). Then

    y' = ŷ + (σ_{i+1} − σ̂)·d(ŷ, σ̂),   y_{i+1} = ŷ + (σ_{i+1} − σ̂)·(d(ŷ, σ̂) + d(y', σ_{i+1}))/2,

with an Euler step into σ = 0. s_churn = 0 is the deterministic Heun sampler. k-diffusion's
``sample_heun``, diffusers' HeunDiscreteScheduler; NFE = 2N − 1 on grids ending at t = 0.
"""

from __future__ import annotations

import math

from torch import Tensor

from ..schedules import Schedule
from .base import SAMPLERS, Callback, Denoiser, EdmStep, EpsFn, NoiseSampler, churned, edm_denoiser, report, sigmas_of


def heun_step(D: Denoiser, y: Tensor, s: float, u: float) -> tuple[Tensor, Tensor]:
    """One Heun step of dy/dσ = (y − D(y; σ))/σ from σ = s to u (an Euler step into u = 0); returns (y_u, D(y; s))."""
    d0 = D(y, s)
    d = (y - d0) / s
    if u == 0:
        return y + (u - s) * d, d0
    y2 = y + (u - s) * d
    return y + (u - s) * (d + (y2 - D(y2, u)) / u) / 2, d0


@SAMPLERS.register("heun")
def heun(
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
    """EDM's stochastic Heun sampler (s_churn = 0: deterministic 2nd-order Heun); NFE = 2·steps − 1."""
    return walk_churned(heun_step, eps_fn, x, grid, schedule, noise_sampler, callback, s_churn, s_tmin, s_tmax, s_noise)


def walk_churned(
    step: EdmStep,
    eps_fn: EpsFn,
    x: Tensor,
    grid: Tensor,
    schedule: Schedule,
    noise_sampler: NoiseSampler,
    callback: Callback | None,
    s_churn: float,
    s_tmin: float,
    s_tmax: float,
    s_noise: float,
) -> Tensor:
    """In y = x/√ᾱ, EDM's churn to σ̂ then ``step(D, y, σ̂, σ_{i+1})`` at every step of the grid."""
    D = edm_denoiser(eps_fn, schedule)
    sig = sigmas_of(grid, schedule)
    n = len(sig) - 1
    y = x * math.sqrt(1 + sig[0] ** 2)
    for i in range(n):
        z = noise_sampler(y) if s_churn > 0 else None  # EDM's Alg. 2 draws ε_i at every step, as k-diffusion
        y, s_hat = churned(y, sig[i], n, z, s_churn, s_tmin, s_tmax, s_noise)
        y, d0 = step(D, y, s_hat, sig[i + 1])
        report(callback, i, grid, y / math.sqrt(1 + sig[i + 1] ** 2), d0)
    return y / math.sqrt(1 + sig[-1] ** 2)
