r"""DEIS (Zhang & Chen 2023), the tAB-DEIS multistep exponential integrator, orders 1–3.

In y = x/√ᾱ and σ = √((1−ᾱ)/ᾱ) the PF-ODE is dy/dσ = ε(x, t). tAB-DEIS interpolates the last k
ε's by a polynomial in log σ (Lagrange basis ℓ_j on log σ_i, log σ_{i−1}, …) and integrates it exactly:

    y_{i+1} = y_i + Σ_j c_j·ε_{i−j},   c_j = ∫_{σ_i}^{σ_{i+1}} ℓ_j(log τ) dτ,

with ∫ P(log τ) dτ = τ·Σ_m (−1)^m P^{(m)}(log τ) (0 at τ = 0). k = 1 is DDIM. diffusers'
``DEISMultistepScheduler`` (``algorithm_type="deis"``): its warm-up, and with ``lower_order_final`` its
last two steps at orders 1 and ≤ 2 when N < 15. NFE = N.
"""

from __future__ import annotations

import math

from numpy.polynomial import Polynomial
from torch import Tensor

from ..schedules import Schedule
from .base import SAMPLERS, Callback, EpsFn, NoiseSampler, denoise, report, sigmas_of, times_like


def deis_coefficients(sigmas: list[float], i: int, order: int) -> list[float]:
    """c_j, j = 0 … order−1: ∫ over [σ_i, σ_{i+1}] of the Lagrange basis in log σ on σ_i, σ_{i−1}, …."""
    nodes = [math.log(sigmas[i - k]) for k in range(order)]

    def antiderivative(p: Polynomial, tau: float) -> float:
        if tau == 0:
            return 0.0
        total, sign, u = 0.0, 1.0, math.log(tau)
        while True:
            total += sign * p(u)
            if p.degree() == 0:
                return tau * total
            p, sign = p.deriv(), -sign

    out = []
    for j in range(order):
        basis = Polynomial([1.0])
        for k in range(order):
            if k != j:
                basis *= Polynomial([-nodes[k], 1.0]) / (nodes[j] - nodes[k])
        out.append(antiderivative(basis, sigmas[i + 1]) - antiderivative(basis, sigmas[i]))
    return out


@SAMPLERS.register("deis")
def deis(
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
    """tAB-DEIS of order 1, 2 (default) or 3: ε interpolated in log σ, integrated exactly in σ; NFE = steps."""
    if isinstance(order, bool) or order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
    sig = sigmas_of(grid, schedule)
    n = len(sig) - 1
    y = x * math.sqrt(1 + sig[0] ** 2)
    eps_hist: list[Tensor] = []  # newest first
    for i in range(n):
        x = y / math.sqrt(1 + sig[i] ** 2)
        eps = eps_fn(x, times_like(grid[i], x))
        eps_hist = [eps] + eps_hist[: order - 1]
        k = min(order, i + 1, n - i if lower_order_final and n < 15 else order)
        for c, e in zip(deis_coefficients(sig, i, k), eps_hist):
            y = y + c * e
        report(callback, i, grid, y / math.sqrt(1 + sig[i + 1] ** 2), lambda: denoise(x, eps, 1 / (1 + sig[i] ** 2)))
    return y / math.sqrt(1 + sig[-1] ** 2)
