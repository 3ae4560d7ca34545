r"""iPNDM (Zhang & Chen 2023; Zhou et al. 2024): PNDM's multistep ε without its Runge–Kutta warm-up.

In y = x/√ᾱ, σ = √((1−ᾱ)/ᾱ), dy/dσ = ε. Step i uses the Adams–Bashforth weights for equal steps of
order k = min(order, i + 1) on the last k ε's (``pndm.AB_WEIGHTS``):

    y_{i+1} = y_i + (σ_{i+1} − σ_i)·Σ_j w_j·ε_{i−j},

so the first step is Euler (DDIM) and the warm-up costs no extra evaluation. NFE = N.

``ipndm-v`` (ComfyUI's ``sample_ipndm_v``, from zju-pi/diff-sampler) takes the variable-step Adams–Bashforth
weights of the actual σ steps instead, w_j = ∫ L_j(σ) dσ/(σ_{i+1} − σ_i) over [σ_i, σ_{i+1}] with L_j the Lagrange
basis on σ_i, σ_{i−1}, …, and an Euler step into σ = 0; on equal steps they are iPNDM's. The published code's
weights are these at order 2 only: at order 3 its ``temp`` term reads (1 − h/(3(h+h₁))·R)/2 where the
integral has (1 − h/(3(h+h₁)))·R/2 (the same on equal steps), and its order-4 weights are not AB4's even on
equal steps (2.375, … against 55/24, …). The integral is what the method means, so it is what runs here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Callable

import numpy as np
from torch import Tensor

from ..schedules import Schedule
from .base import SAMPLERS, Callback, EpsFn, NoiseSampler, denoise, report, sigmas_of, times_like
from .pndm import AB_WEIGHTS, weighted


@SAMPLERS.register("ipndm", spacing="leading")
def ipndm(
    eps_fn: EpsFn,
    x: Tensor,
    grid: Tensor,
    schedule: Schedule,
    *,
    noise_sampler: NoiseSampler,
    callback: Callback | None = None,
    order: int = 4,
) -> Tensor:
    """iPNDM: pseudo linear multistep of order ≤ 4 (default 4) with lower-order warm-up; NFE = steps."""
    return _multistep(eps_fn, x, grid, schedule, callback, order, lambda sig, i, k: AB_WEIGHTS[k - 1])


Weights = Callable[[list[float], int, int], Sequence[float]]


def _multistep(
    eps_fn: EpsFn, x: Tensor, grid: Tensor, schedule: Schedule, callback: Callback | None, order: int, weights: Weights
) -> Tensor:
    """y_{i+1} = y_i + (σ_{i+1} − σ_i)·Σ_j w_j·ε_{i−j} with w = ``weights(σ, i, k)`` on the k newest ε's."""
    if isinstance(order, bool) or order not in (1, 2, 3, 4):
        raise ValueError(f"order must be 1, 2, 3 or 4, got {order!r}")
    sig = sigmas_of(grid, schedule)
    y = x * math.sqrt(1 + sig[0] ** 2)
    eps_hist: list[Tensor] = []  # newest first
    for i in range(len(sig) - 1):
        x = y / math.sqrt(1 + sig[i] ** 2)
        eps = eps_fn(x, times_like(grid[i], x))
        eps_hist = [eps] + eps_hist[: order - 1]
        y = y + (sig[i + 1] - sig[i]) * weighted(eps_hist, weights(sig, i, len(eps_hist)))
        report(callback, i, grid, y / math.sqrt(1 + sig[i + 1] ** 2), lambda: denoise(x, eps, 1 / (1 + sig[i] ** 2)))
    return y / math.sqrt(1 + sig[-1] ** 2)


def adams_bashforth(nodes: list[float], start: float, end: float) -> list[float]:
    """Variable-step Adams–Bashforth weights: w_j = ∫_start^end L_j(σ) dσ / (end − start), L_j the Lagrange basis
    polynomials on ``nodes`` (newest first, nodes[0] = start)."""
    weights = []
    for j, nj in enumerate(nodes):
        p = np.poly1d([1.0])
        for k, nk in enumerate(nodes):
            if k != j:
                p = p * np.poly1d([1.0, -nk]) / (nj - nk)
        P = p.integ()
        weights.append((P(end) - P(start)) / (end - start))
    return weights


@SAMPLERS.register("ipndm-v")
def ipndm_v(
    eps_fn: EpsFn,
    x: Tensor,
    grid: Tensor,
    schedule: Schedule,
    *,
    noise_sampler: NoiseSampler,
    callback: Callback | None = None,
    order: int = 4,
) -> Tensor:
    """Variable-step iPNDM: y_{i+1} = y_i + (σ_{i+1} − σ_i)·Σ_j w_j·ε_{i−j}, w the Adams–Bashforth weights of the
    actual σ steps; Euler into σ = 0; NFE = steps."""

    def weights(sig: list[float], i: int, k: int) -> Sequence[float]:
        if sig[i + 1] == 0 or k == 1:
            return [1.0]
        return adams_bashforth([sig[i - j] for j in range(k)], sig[i], sig[i + 1])

    return _multistep(eps_fn, x, grid, schedule, callback, order, weights)
