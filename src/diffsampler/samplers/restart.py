r"""Restart sampling (Xu et al. 2023): Heun steps on the PF-ODE, with restart intervals of forward noise.

In y = x/√ᾱ, σ = √((1−ᾱ)/ᾱ): the grid is walked with EDM's Heun steps (``heun``, no churn). On reaching
the grid's noise level σ_j nearest ``restart_min`` (if ``restart_max`` > σ_j), the sample is taken back
up ``restarts`` times by the forward process and solved down again:

    y ← y + s_noise·√(σ_max² − σ_j²)·z,   then ``restart_steps`` Heun steps on a Karras (ρ = 7) grid σ_max → σ_j,

with σ_max = ``restart_max``. The noise contracts the error accumulated so far (the paper's argument);
the ODE steps keep the discretisation error of an ODE solver. NFE = 2N − 1 + 2·restarts·restart_steps
on grids ending at t = 0.
"""

from __future__ import annotations

import math

from torch import Tensor

from ..schedules import Schedule
from ..schedules.grids import karras_sigmas
from .base import SAMPLERS, Callback, EpsFn, NoiseSampler, edm_denoiser, report, sigmas_of
from .heun import heun_step


@SAMPLERS.register("restart")
def restart(eps_fn: EpsFn, x: Tensor, grid: Tensor, schedule: Schedule, *, noise_sampler: NoiseSampler,
            callback: Callback | None = None, restart_min: float = 0.1, restart_max: float = 2.0, restarts: int = 1,
            restart_steps: int = 2, s_noise: float = 1.0) -> Tensor:
    """Restart: Heun on the grid, with ``restarts`` passes of noise up to σ = restart_max and
    ``restart_steps`` Heun steps back down from the grid level nearest σ = restart_min;
    NFE = 2·steps − 1 + 2·restarts·restart_steps."""
    if not (0 < restart_min < restart_max) or isinstance(restarts, bool) or restarts < 0 or restart_steps < 1:
        raise ValueError(f"need 0 < restart_min < restart_max, restarts ≥ 0 and restart_steps ≥ 1, got "
                         f"restart_min={restart_min}, restart_max={restart_max}, restarts={restarts}, "
                         f"restart_steps={restart_steps}")
    D = edm_denoiser(eps_fn, schedule)
    sig = sigmas_of(grid, schedule)
    inner = [k for k in range(1, len(sig) - 1) if sig[k] > 0]
    j = min(inner, key=lambda k: abs(math.log(sig[k] / restart_min)), default=None)
    y = x * math.sqrt(1 + sig[0] ** 2)
    for i in range(len(sig) - 1):
        y, d0 = heun_step(D, y, sig[i], sig[i + 1])
        if i + 1 == j and restart_max > sig[j]:
            levels = karras_sigmas(restart_steps + 1, sig[j], restart_max).tolist()
            for _ in range(restarts):
                y = y + s_noise * math.sqrt(restart_max**2 - sig[j] ** 2) * noise_sampler(y)
                for s, u in zip(levels[:-1], levels[1:]):
                    y, _ = heun_step(D, y, s, u)
        report(callback, i, grid, y / math.sqrt(1 + sig[i + 1] ** 2), d0)
    return y / math.sqrt(1 + sig[-1] ** 2)
