r"""DPM-Solver++(2M) (Lu et al. 2022), multistep in λ = log(α/σ_t) = ½·log-SNR.

With data predictions m_i = x̂_0(x_i, t_i), α_t = √ᾱ, σ_t = √(1−ᾱ), h = λ_u − λ_s and
r = h_prev/h:

    first order:  x_u = (σ_u/σ_s)·x_s − α_u·(e^{−h} − 1)·m_s
    second order: the same with m_s replaced by D = m_s + (m_s − m_prev)/(2r).

The first step is first order (no history) and so is a step into t = 0 (h = ∞: x_u = m_s);
with ``lower_order_final`` the last step is first order when N < 15 (diffusers' rule). NFE = N.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..schedules import Schedule
from .base import SAMPLERS, Callback, EpsFn, NoiseSampler, denoise, report, times_like


@SAMPLERS.register("dpm-solver++", spacing="logsnr")
def dpm_solver_pp(eps_fn: EpsFn, x: Tensor, grid: Tensor, schedule: Schedule, *, noise_sampler: NoiseSampler,
                  callback: Callback | None = None, lower_order_final: bool = True) -> Tensor:
    """DPM-Solver++(2M): second-order multistep exponential integrator on x̂_0; NFE = steps."""
    ab = schedule.alpha_bar(grid).tolist()
    n = len(ab) - 1
    lam = [0.5 * (math.log(a) - math.log1p(-a)) if a < 1 else math.inf for a in ab]
    m_prev = h_prev = None
    for i in range(n):
        a_s, a_u = ab[i], ab[i + 1]
        eps = eps_fn(x, times_like(grid[i], x))
        m = denoise(x, eps, a_s)
        if a_u >= 1:
            x_new, h = m, math.inf
        elif a_u == a_s:  # a null step (a grid that repeats its last time)
            x_new, h = x, 0.0
        else:
            h = lam[i + 1] - lam[i]
            first = m_prev is None or (lower_order_final and i == n - 1 and n < 15)
            d = m if first else torch.lerp(m_prev, m, 1 + h / (2 * h_prev))  # m + (m − m_prev)/(2r), r = h_prev/h
            x_new = (-(a_u**0.5) * math.expm1(-h) * d).add_(x, alpha=((1 - a_u) / (1 - a_s)) ** 0.5)
        report(callback, i, grid, x_new, m)
        x, m_prev, h_prev = x_new, m, h
    return x
