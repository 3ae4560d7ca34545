r"""DPM-Solver++ singlestep (Lu et al. 2022) as diffusers' ``DPMSolverSinglestepScheduler``: the grid's
times are the stages.

The grid's steps are grouped by an order list (k = 1, 2 or 3 steps per group, orders 1, 2, …, k
inside a group). Within a group starting at t_a, step j lands on t_{a+j} from x_a itself, using the
data predictions m_a … m_{a+j−1} at the stages already reached. With α = √ᾱ, σ = √(1−ᾱ),
λ = log(α/σ), h = λ_u − λ_a, φ = e^{−h} − 1 and x_u^{(1)} = (σ_u/σ_a)·x_a − α_u·φ·m_a:

    order 2:  x_u = x_u^{(1)} − ½·α_u·φ·D₁  (``midpoint``)  or  + α_u·(φ/h + 1)·D₁  (``heun``),
              D₁ = (m_{a+1} − m_a)/r,  r = (λ_{a+1} − λ_a)/h;
    order 3:  x_u = x_u^{(1)} + α_u·(φ/h + 1)·D₁'  (``midpoint``), D₁' = (m_{a+2} − m_a)/r₀,
              or  + α_u·(φ/h + 1)·D₁ − α_u·((φ + h)/h² − ½)·D₂  (``heun``), with r₀ = (λ_{a+2} − λ_a)/h,
              r₁ = (λ_{a+1} − λ_a)/h, D₁ = (r₀·D₁₀ − r₁·D₁')/(r₀ − r₁), D₂ = 2(D₁' − D₁₀)/(r₀ − r₁),
              D₁₀ = (m_{a+1} − m_a)/r₁.

The order list is diffusers' (``lower_order_final``: the last group is shortened; a grid ending at
t = 0 ends with order 1, whose step is x̂_0). NFE = N.
"""

from __future__ import annotations

import math

from torch import Tensor

from ..schedules import Schedule
from .base import SAMPLERS, Callback, EpsFn, NoiseSampler, denoise, lambdas_of, report, times_like


def singlestep_orders(steps: int, order: int, lower_order_final: bool, ends_at_zero: bool) -> list[int]:
    """Each step's order: 1, 2, …, k repeated, with diffusers' ending (``get_order_list``)."""
    if lower_order_final:
        head, rest = divmod(steps, order)
        if order == 3 and rest == 0:
            orders = [1, 2, 3] * (head - 1) + [1, 2] + [1]
        elif order == 2 and rest == 0:
            orders = [1, 2] * (head - 1) + [1, 1]
        else:
            orders = list(range(1, order + 1)) * head + list(range(1, rest + 1))
    else:
        orders = list(range(1, order + 1)) * (steps // order) + list(range(1, steps % order + 1))
    if ends_at_zero:
        orders[-1] = 1
    return orders


@SAMPLERS.register("dpm-solver++-singlestep")
def dpm_solver_pp_singlestep(
    eps_fn: EpsFn,
    x: Tensor,
    grid: Tensor,
    schedule: Schedule,
    *,
    noise_sampler: NoiseSampler,
    callback: Callback | None = None,
    order: int = 2,
    solver_type: str = "midpoint",
    lower_order_final: bool = True,
) -> Tensor:
    """DPM-Solver++ singlestep of order 1, 2 (default) or 3 whose stages are the grid's times; NFE = steps."""
    if isinstance(order, bool) or order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
    if solver_type not in ("midpoint", "heun"):
        raise ValueError(f"solver_type must be 'midpoint' or 'heun', got {solver_type!r}")
    ab = schedule.alpha_bar(grid).tolist()
    lam = lambdas_of(ab)
    n = len(ab) - 1
    orders = singlestep_orders(n, order, lower_order_final, ab[-1] >= 1)
    ms: list[Tensor] = []
    x_a = x
    for i in range(n):
        k = orders[i]
        m = denoise(x, eps_fn(x, times_like(grid[i], x)), ab[i])
        ms = [m] if k == 1 else ms + [m]
        a, u = i - k + 1, i + 1
        if k == 1:
            x_a = x
        if ab[u] >= 1:
            x = m
        else:
            h = lam[u] - lam[a]
            phi, alpha = math.expm1(-h), ab[u] ** 0.5
            x = (-alpha * phi * ms[0]).add_(x_a, alpha=((1 - ab[u]) / (1 - ab[a])) ** 0.5)
            if k == 2:
                d1 = (ms[1] - ms[0]) / ((lam[a + 1] - lam[a]) / h)
                x.add_(d1, alpha=-0.5 * alpha * phi if solver_type == "midpoint" else alpha * (phi / h + 1))
            elif k == 3:
                r0, r1 = (lam[a + 2] - lam[a]) / h, (lam[a + 1] - lam[a]) / h
                d1_1 = (ms[2] - ms[0]) / r0
                if solver_type == "midpoint":
                    x.add_(d1_1, alpha=alpha * (phi / h + 1))
                else:
                    d1_0 = (ms[1] - ms[0]) / r1
                    x.add_((r0 * d1_0 - r1 * d1_1) / (r0 - r1), alpha=alpha * (phi / h + 1))
                    x.add_(2 * (d1_1 - d1_0) / (r0 - r1), alpha=-alpha * ((phi + h) / h**2 - 0.5))
        report(callback, i, grid, x, m)
    return x
