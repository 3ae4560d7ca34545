r"""iPNDM (Zhang & Chen 2023; Zhou et al. 2024): PNDM's multistep ε without its Runge–Kutta warm-up.

In y = x/√ᾱ, σ = √((1−ᾱ)/ᾱ), dy/dσ = ε. Step i uses the Adams–Bashforth weights for equal steps of
order k = min(order, i + 1) on the last k ε's (``pndm.AB_WEIGHTS``):

    y_{i+1} = y_i + (σ_{i+1} − σ_i)·Σ_j w_j·ε_{i−j},

so the first step is Euler (DDIM) and the warm-up costs no extra evaluation. NFE = N.
"""

from __future__ import annotations

import math

from torch import Tensor

from ..schedules import Schedule
from .base import SAMPLERS, Callback, EpsFn, NoiseSampler, denoise, report, sigmas_of, times_like
from .pndm import combined


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
    if isinstance(order, bool) or order not in (1, 2, 3, 4):
        raise ValueError(f"order must be 1, 2, 3 or 4, got {order!r}")
    sig = sigmas_of(grid, schedule)
    y = x * math.sqrt(1 + sig[0] ** 2)
    eps_hist: list[Tensor] = []  # newest first
    for i in range(len(sig) - 1):
        x = y / math.sqrt(1 + sig[i] ** 2)
        eps = eps_fn(x, times_like(grid[i], x))
        eps_hist = [eps] + eps_hist[: order - 1]
        y = y + (sig[i + 1] - sig[i]) * combined(eps_hist, len(eps_hist))
        report(callback, i, grid, y / math.sqrt(1 + sig[i + 1] ** 2), lambda: denoise(x, eps, 1 / (1 + sig[i] ** 2)))
    return y / math.sqrt(1 + sig[-1] ** 2)
