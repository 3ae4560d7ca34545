r"""Ancestral Euler steps (k-diffusion's ``sample_euler_ancestral``; diffusers' EulerAncestralDiscreteScheduler).

In y = x/√ᾱ with σ = √((1−ᾱ)/ᾱ): from σ_i to σ_{i+1} take an Euler step down to
σ_down = √(σ_{i+1}² − σ_up²), then add σ_up·s_noise·z, where

    σ_up = min(σ_{i+1}, η·√(σ_{i+1}²(σ_i² − σ_{i+1}²)/σ_i²)).

η = 1 is the ancestral sampler, η = 0 is Euler (DDIM). No noise on a step into σ = 0. NFE = N.
With a paired ε (CFG++) the Euler part re-noises with ε_r: D + σ_down·ε_r (ComfyUI's
``sample_euler_ancestral_cfg_pp``).
"""

from __future__ import annotations

import math

from torch import Tensor

from ..schedules import Schedule
from .base import SAMPLERS, Callback, EdmStep, EpsFn, NoiseSampler, edm_denoiser, edm_pair, report, sigmas_of


def ancestral_step(sigma: float, sigma_next: float, eta: float = 1.0) -> tuple[float, float]:
    """(σ_down, σ_up) of an ancestral step from σ to σ_next with stochasticity η."""
    if not eta:
        return sigma_next, 0.0
    up = min(sigma_next, eta * math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
    return math.sqrt(sigma_next**2 - up**2), up


def walk_ancestral(
    step: EdmStep,
    eps_fn: EpsFn,
    x: Tensor,
    grid: Tensor,
    schedule: Schedule,
    noise_sampler: NoiseSampler,
    callback: Callback | None,
    eta: float,
    s_noise: float,
) -> Tensor:
    """In y = x/√ᾱ, ``step(D, y, σ_i, σ_down)`` then s_noise·σ_up·z (where σ_{i+1} > 0) at every step of the grid."""
    if not eta >= 0:
        raise ValueError(f"eta must be ≥ 0, got {eta!r}")
    D = edm_denoiser(eps_fn, schedule)
    sig = sigmas_of(grid, schedule)
    y = x * math.sqrt(1 + sig[0] ** 2)
    for i in range(len(sig) - 1):
        down, up = ancestral_step(sig[i], sig[i + 1], eta)
        y, d0 = step(D, y, sig[i], down)
        if sig[i + 1] > 0 and up > 0:
            y = y + (s_noise * up) * noise_sampler(y)
        report(callback, i, grid, y / math.sqrt(1 + sig[i + 1] ** 2), d0)
    return y / math.sqrt(1 + sig[-1] ** 2)


@SAMPLERS.register("euler-ancestral", renoise=True)
def euler_ancestral(
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
    """Euler down to σ_down, then fresh noise up to σ_{i+1} (η = 1 ancestral, 0 deterministic); NFE = steps."""
    if not eta >= 0:
        raise ValueError(f"eta must be ≥ 0, got {eta!r}")
    D = edm_pair(eps_fn, schedule)
    sig = sigmas_of(grid, schedule)
    y = x * math.sqrt(1 + sig[0] ** 2)
    for i in range(len(sig) - 1):
        d0, shift = D(y, sig[i])
        down, up = ancestral_step(sig[i], sig[i + 1], eta)
        y = y + (down - sig[i]) / sig[i] * (y - d0)
        if shift is not None:
            y = y + down * shift
        if sig[i + 1] > 0 and up > 0:
            y = y + (s_noise * up) * noise_sampler(y)
        report(callback, i, grid, y / math.sqrt(1 + sig[i + 1] ** 2), d0)
    return y / math.sqrt(1 + sig[-1] ** 2)
