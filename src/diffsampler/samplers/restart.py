r"""Restart sampling (Xu et al. 2023): Heun steps on the PF-ODE, with restart intervals of forward noise.

In y = x/√ᾱ, σ = √((1−ᾱ)/ᾱ): the grid is walked with EDM's Heun steps (``heun``, no churn). On reaching
the grid's noise level σ_j nearest ``restart_min`` (if ``restart_max`` > σ_j), the sample is taken back
up ``restarts`` times by the forward process and solved down again:

    y ← y + s_noise·√(σ_max² − σ_j²)·z,   then K Heun steps on a Karras (ρ = 7) grid σ_max → σ_j,

with σ_max = ``restart_max``. The noise contracts the error accumulated so far (the paper's argument);
the ODE steps keep the discretisation error of an ODE solver, so K follows the grid's density by default:
K = max(2, #{k : σ_j < σ_k ≤ σ_max}), the steps the main walk itself takes over that interval (more inner
steps as the steps grow, as the paper's settings and the common web-UI implementation do; a fixed K stops
the error from falling with N). ``restart_steps`` fixes K. NFE = 2N − 1 + 2·restarts·K on grids ending at t = 0.
"""

from __future__ import annotations

import math

from torch import Tensor

from ..schedules import Schedule
from ..schedules.grids import karras_sigmas
from .base import SAMPLERS, Callback, EpsFn, NoiseSampler, edm_denoiser, report, sigmas_of
from .heun import heun_step


def inner_steps(sig: list[float], j: int, restart_max: float) -> int:
    """K by default: the grid's own levels in (σ_j, σ_max], at least 2."""
    return max(2, sum(1 for s in sig[:j] if s <= restart_max))


@SAMPLERS.register("restart")
def restart(
    eps_fn: EpsFn,
    x: Tensor,
    grid: Tensor,
    schedule: Schedule,
    *,
    noise_sampler: NoiseSampler,
    callback: Callback | None = None,
    restart_min: float = 0.1,
    restart_max: float = 2.0,
    restarts: int = 1,
    restart_steps: int | None = None,
    s_noise: float = 1.0,
) -> Tensor:
    """Restart: Heun on the grid, with ``restarts`` passes of noise up to σ = restart_max and K Heun steps back
    down from the grid level nearest σ = restart_min (K = ``restart_steps``, or the grid's own steps over that
    interval, at least 2); NFE = 2·steps − 1 + 2·restarts·K."""
    if (
        not (0 < restart_min < restart_max)
        or isinstance(restarts, bool)
        or restarts < 0
        or (restart_steps is not None and restart_steps < 1)
    ):
        raise ValueError(
            f"need 0 < restart_min < restart_max, restarts ≥ 0 and restart_steps ≥ 1, got "
            f"restart_min={restart_min}, restart_max={restart_max}, restarts={restarts}, "
            f"restart_steps={restart_steps}"
        )
    D = edm_denoiser(eps_fn, schedule)
    sig = sigmas_of(grid, schedule)
    inner = [k for k in range(1, len(sig) - 1) if sig[k] > 0]
    j = min(inner, key=lambda k: abs(math.log(sig[k] / restart_min)), default=None)
    y = x * math.sqrt(1 + sig[0] ** 2)
    for i in range(len(sig) - 1):
        y, d0 = heun_step(D, y, sig[i], sig[i + 1])
        if i + 1 == j and restart_max > sig[j]:
            k = restart_steps if restart_steps is not None else inner_steps(sig, j, restart_max)
            levels = karras_sigmas(k + 1, sig[j], restart_max).tolist()
            for _ in range(restarts):
                y = y + s_noise * math.sqrt(restart_max**2 - sig[j] ** 2) * noise_sampler(y)
                for s, u in zip(levels[:-1], levels[1:]):
                    y, _ = heun_step(D, y, s, u)
        report(callback, i, grid, y / math.sqrt(1 + sig[i + 1] ** 2), d0)
    return y / math.sqrt(1 + sig[-1] ** 2)
