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
from .base import SAMPLERS, Callback, Denoiser, EpsFn, NoiseSampler
from .euler_ancestral import walk_ancestral


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
    return walk_ancestral(_step, eps_fn, x, grid, schedule, noise_sampler, callback, eta, s_noise)


def _step(D: Denoiser, y: Tensor, s: float, down: float) -> tuple[Tensor, Tensor]:
    """One DPM-Solver++(2S) step from σ = s to σ_down (x̂_0 itself into 0); returns (y_down, D(y; s))."""
    d0 = D(y, s)
    if down == 0:
        return d0, d0
    h = math.log(s / down)
    mid = math.sqrt(s * down)
    y_s = (mid / s * y).add_(d0, alpha=-math.expm1(-h / 2))
    return (down / s * y).add_(D(y_s, mid), alpha=-math.expm1(-h)), d0
