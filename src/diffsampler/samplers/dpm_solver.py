r"""DPM-Solver++ multistep (Lu et al. 2022), orders 1–3, in λ = log(α/σ_t) = ½·log-SNR.

With data predictions m_i = x̂_0(x_i, t_i), α_t = √ᾱ, σ_t = √(1−ᾱ), h = λ_u − λ_s, φ = e^{−h} − 1,
and the previous steps' sizes h₀, h₁ (r₀ = h₀/h, r₁ = h₁/h):

    order 1:  x_u = (σ_u/σ_s)·x_s − α_u·φ·m₀                                (DDIM)
    order 2:  … − ½·α_u·φ·D₁,                       D₁ = (m₀ − m₁)/r₀
    order 3:  … + α_u·(φ/h + 1)·D₁ − α_u·((φ + h)/h² − ½)·D₂,
              D₁ = D₁₀ + r₀·D₂,  D₂ = (D₁₀ − D₁₁)/(r₀ + r₁),  D₁₀ = (m₀ − m₁)/r₀,  D₁₁ = (m₁ − m₂)/r₁

(diffusers' ``DPMSolverMultistepScheduler`` with ``algorithm_type="dpmsolver++"``). The first steps
use the orders their history allows, a step into t = 0 (h = ∞) is x_u = m₀, and with
``lower_order_final`` the last two steps drop to orders 1 and ≤ 2 when N < 15 (diffusers' rule).
NFE = N. With a paired ε (CFG++) m₀ is the guided x̂_0, x_s is re-noised with ε_r
(x_s ← α_s·m₀ + σ_s·ε_r) and the history keeps the re-noising x̂_0 (ComfyUI's ``dpmpp_2m_cfg_pp``).
"""

from __future__ import annotations

import math

from torch import Tensor

from ..schedules import Schedule
from .base import SAMPLERS, Callback, EpsFn, NoiseSampler, denoise, eps_pair, lambdas_of, renoised, report, times_like


@SAMPLERS.register("dpm-solver++", renoise=True)
def dpm_solver_pp(
    eps_fn: EpsFn,
    x: Tensor,
    grid: Tensor,
    schedule: Schedule,
    *,
    noise_sampler: NoiseSampler,
    callback: Callback | None = None,
    order: int = 2,
    lower_order_final: bool = True,
) -> Tensor:
    """DPM-Solver++(kM): multistep exponential integrator on x̂_0, order k = 1, 2 (default) or 3; NFE = steps."""
    if order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
    ab = schedule.alpha_bar(grid).tolist()
    n = len(ab) - 1
    lam = lambdas_of(ab)
    ms: list[Tensor] = []  # data predictions, newest last
    hs: list[float] = []  # step sizes in λ, newest last
    for i in range(n):
        a_s, a_u = ab[i], ab[i + 1]
        eps, eps_r = eps_pair(eps_fn, x, times_like(grid[i], x))
        m = denoise(x, eps, a_s)
        m_r = m if eps_r is eps else denoise(x, eps_r, a_s)
        if a_u >= 1:
            x_new, h = m, math.inf
        elif a_u == a_s:  # a null step (a grid that repeats its last time)
            x_new, h = x, 0.0
        else:
            h = lam[i + 1] - lam[i]
            k = min(order, len(ms) + 1, n - i if lower_order_final and n < 15 else order)
            phi, alpha = math.expm1(-h), a_u**0.5
            x_new = (-alpha * phi * m).add_(renoised(x, m, m_r, a_s**0.5), alpha=((1 - a_u) / (1 - a_s)) ** 0.5)
            if k >= 2:
                d1 = (m - ms[-1]) / (hs[-1] / h)
                if k == 2:
                    x_new.add_(d1, alpha=-0.5 * alpha * phi)
                else:
                    r0, r1 = hs[-1] / h, hs[-2] / h
                    d2 = (d1 - (ms[-1] - ms[-2]) / r1) / (r0 + r1)
                    x_new.add_(d1 + r0 * d2, alpha=alpha * (phi / h + 1))
                    x_new.add_(d2, alpha=-alpha * ((phi + h) / h**2 - 0.5))
        report(callback, i, grid, x_new, m)
        ms, hs = (ms + [m_r])[-2:], (hs + [h])[-2:]
        x = x_new
    return x
