r"""Linear multistep in σ (k-diffusion's ``sample_lms``; diffusers' LMSDiscreteScheduler).

In y = x/√ᾱ the PF-ODE is dy/dσ = d(y, σ) = (y − D(y; σ))/σ. With the last k derivatives
d_i, d_{i−1}, …, d_{i−k+1} (k = min(order, i + 1)), an Adams–Bashforth step integrates their
Lagrange interpolant over [σ_i, σ_{i+1}]:

    y_{i+1} = y_i + Σ_j c_j·d_{i−j},   c_j = ∫_{σ_i}^{σ_{i+1}} Π_{m≠j} (τ − σ_{i−m})/(σ_{i−j} − σ_{i−m}) dτ,

the integrals taken exactly (polynomial antiderivatives). NFE = N.
"""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from ..schedules import Schedule
from .base import SAMPLERS, Callback, EpsFn, NoiseSampler, edm_denoiser, report, sigmas_of


def lms_coefficients(sigmas: list[float], i: int, order: int) -> list[float]:
    """c_j, j = 0 … order−1: the integrals over [σ_i, σ_{i+1}] of the Lagrange basis on σ_i, σ_{i−1}, …."""
    nodes = [sigmas[i - k] for k in range(order)]
    out = []
    for j in range(order):
        basis = np.polynomial.Polynomial([1.0])
        for k in range(order):
            if k != j:
                basis *= np.polynomial.Polynomial([-nodes[k], 1.0]) / (nodes[j] - nodes[k])
        antiderivative = basis.integ()
        out.append(float(antiderivative(sigmas[i + 1]) - antiderivative(sigmas[i])))
    return out


@SAMPLERS.register("lms")
def lms(
    eps_fn: EpsFn,
    x: Tensor,
    grid: Tensor,
    schedule: Schedule,
    *,
    noise_sampler: NoiseSampler,
    callback: Callback | None = None,
    order: int = 4,
) -> Tensor:
    """Linear multistep (Adams–Bashforth in σ) of order ≤ 4 on the PF-ODE; NFE = steps."""
    if isinstance(order, bool) or order not in (1, 2, 3, 4):
        raise ValueError(f"order must be 1, 2, 3 or 4, got {order!r}")
    D = edm_denoiser(eps_fn, schedule)
    sig = sigmas_of(grid, schedule)
    y = x * math.sqrt(1 + sig[0] ** 2)
    ds: list[Tensor] = []  # derivatives, newest first
    for i in range(len(sig) - 1):
        d0 = D(y, sig[i])
        ds = [(y - d0) / sig[i]] + ds[: order - 1]
        for c, d in zip(lms_coefficients(sig, i, len(ds)), ds):
            y = y + c * d
        report(callback, i, grid, y / math.sqrt(1 + sig[i + 1] ** 2), d0)
    return y / math.sqrt(1 + sig[-1] ** 2)
