r"""Euler steps on the probability-flow ODE in EDM's coordinates, with optional churn (Karras et al. 2022, Alg. 2).

With y = x/√ᾱ, σ = √((1−ᾱ)/ᾱ) and the denoiser D(y; σ) = x̂_0, the ODE is dy/dσ = (y − D(y; σ))/σ.
Churn first raises the noise: γ = min(s_churn/N, √2 − 1) where s_tmin ≤ σ_i ≤ s_tmax, else 0,
σ̂ = σ_i(1 + γ), ŷ = y + s_noise·√(σ̂² − σ_i²)·z; then

    y_{i+1} = ŷ + (σ_{i+1} − σ̂)·(ŷ − D(ŷ; σ̂))/σ̂.

Without churn this is DDIM (η = 0). k-diffusion's ``sample_euler``; NFE = N. With a paired ε (CFG++)
the step re-noises with ε_r: y_{i+1} = D + σ_{i+1}·ε_r, i.e. the step above plus σ_{i+1}·(ε_r − ε).
"""

from __future__ import annotations

import math

from torch import Tensor

from ..schedules import Schedule
from .base import SAMPLERS, Callback, EpsFn, NoiseSampler, churned, edm_pair, report, sigmas_of


@SAMPLERS.register("euler", renoise=True)
def euler(
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
    """Euler on the PF-ODE in σ, with EDM's optional churn (s_churn > 0); NFE = steps."""
    D = edm_pair(eps_fn, schedule)
    sig = sigmas_of(grid, schedule)
    n = len(sig) - 1
    y = x * math.sqrt(1 + sig[0] ** 2)
    for i in range(n):
        z = noise_sampler(y) if s_churn > 0 else None  # EDM's Alg. 2 draws ε_i at every step, as k-diffusion
        y, s_hat = churned(y, sig[i], n, z, s_churn, s_tmin, s_tmax, s_noise)
        d0, shift = D(y, s_hat)
        y = y + (sig[i + 1] - s_hat) / s_hat * (y - d0)
        if shift is not None:
            y = y + sig[i + 1] * shift
        report(callback, i, grid, y / math.sqrt(1 + sig[i + 1] ** 2), d0)
    return y / math.sqrt(1 + sig[-1] ** 2)
