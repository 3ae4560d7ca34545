r"""DPM-Solver++(2S): singlestep second order with a midpoint in λ (Lu et al. 2022); k-diffusion's
``sample_dpmpp_2s_ancestral``.

In y = x/√ᾱ with σ = √((1−ᾱ)/ᾱ) and D(y; σ) = x̂_0: each step goes from σ_i to σ_down (σ_{i+1}
itself at η = 0; see ``euler-ancestral`` for σ_down, σ_up), with h = log(σ_i/σ_down) and the
midpoint σ_s = √(σ_i·σ_down):

    y_s = (σ_s/σ_i)·y_i − (e^{−h/2} − 1)·D(y_i; σ_i),
    y_{i+1} = (σ_down/σ_i)·y_i − (e^{−h} − 1)·D(y_s; σ_s)   [+ s_noise·σ_up·z where σ_{i+1} > 0].

A step down to σ = 0 is x̂_0 itself. η = 0 (default) is the deterministic solver, η = 1 the
ancestral sampler. NFE = 2N − 1 on grids ending at t = 0.
"""

from __future__ import annotations

import math

from torch import Tensor

from ..schedules import Schedule
from .base import SAMPLERS, Callback, EpsFn, NoiseSampler, edm_denoiser, report, sigmas_of
from .euler_ancestral import ancestral_step


@SAMPLERS.register("dpm-solver++-2s")
def dpm_solver_pp_2s(
    eps_fn: EpsFn,
    x: Tensor,
    grid: Tensor,
    schedule: Schedule,
    *,
    noise_sampler: NoiseSampler,
    callback: Callback | None = None,
    eta: float = 0.0,
    s_noise: float = 1.0,
) -> Tensor:
    """DPM-Solver++(2S), singlestep 2nd order (η > 0: ancestral); NFE = 2·steps − 1."""
    if not eta >= 0:
        raise ValueError(f"eta must be ≥ 0, got {eta!r}")
    D = edm_denoiser(eps_fn, schedule)
    sig = sigmas_of(grid, schedule)
    y = x * math.sqrt(1 + sig[0] ** 2)
    for i in range(len(sig) - 1):
        d0 = D(y, sig[i])
        down, up = ancestral_step(sig[i], sig[i + 1], eta)
        if down == 0:
            y = d0
        else:
            h = math.log(sig[i] / down)
            s = math.sqrt(sig[i] * down)
            y_s = (s / sig[i] * y).add_(d0, alpha=-math.expm1(-h / 2))
            y = (down / sig[i] * y).add_(D(y_s, s), alpha=-math.expm1(-h))
        if sig[i + 1] > 0 and up > 0:
            y = y + (s_noise * up) * noise_sampler(y)
        report(callback, i, grid, y / math.sqrt(1 + sig[i + 1] ** 2), d0)
    return y / math.sqrt(1 + sig[-1] ** 2)
