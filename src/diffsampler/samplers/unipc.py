r"""UniPC (Zhao et al. 2023): a multistep predictor (UniP-p) and corrector (UniC-p) on data predictions.

With m_i = x̂_0(x_i, t_i), α = √ᾱ, σ = √(1−ᾱ), λ = log(α/σ), h = λ_u − λ_s, the update from t_s to t_u
with m₀ = m_s and K earlier or later predictions m_k at λ_k (r_k = (λ_k − λ_s)/h, D_k = (m_k − m₀)/r_k) is

    x_u = (σ_u/σ_s)·x_s − α_u·(e^{−h} − 1)·m₀ − α_u·B(h)·Σ_k ρ_k·D_k,

with B(h) = −h (``bh1``) or e^{−h} − 1 (``bh2``), and ρ solving Σ_k ρ_k·r_k^{j−1} = j!·φ_{j+1}(−h)·(−h)/B(h),
j = 1 … K (φ_{j+1}(z) = (e^z − Σ_{m≤j} z^m/m!)/z^{j+1}); ρ = ½ where K = 1, as the published code.

UniP-p uses the p − 1 previous predictions; UniC-p, once m_u is known at the predicted x_u, redoes the
step with m_u added (r = 1) and replaces x_u, raising the order by one for no extra evaluation. The
corrector's p is the order of the predictor it corrects; the last sample is not corrected (NFE = N).
Warm-up and ``lower_order_final`` follow diffusers' ``UniPCMultistepScheduler``: step i has order
min(order, i + 1, N − i). A step into t = 0 (h = ∞) is x_u = m_s. With a paired ε (CFG++) the step's
own m₀ is the guided x̂_0, x_s is re-noised with ε_r (x_s ← α_s·m₀ + σ_s·ε_r), and every other node
is a re-noising x̂_0, as ``dpm-solver++`` does.
"""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from ..schedules import Schedule
from .base import SAMPLERS, Callback, EpsFn, NoiseSampler, denoise, eps_pair, lambdas_of, renoised, report, times_like


def unipc_rhos(rs: list[float], h: float, variant: str) -> tuple[list[float], float]:
    """(ρ_k, B(h)) for nodes r_k of a step of size h in λ."""
    z = -h
    b_h = z if variant == "bh1" else math.expm1(z)
    if len(rs) == 1:
        return [0.5], b_h
    b, z_phi, factorial = [], math.expm1(z) / z - 1, 1
    for j in range(1, len(rs) + 1):
        b.append(z_phi * factorial / b_h)
        factorial *= j + 1
        z_phi = z_phi / z - 1 / factorial
    return np.linalg.solve(np.vander(rs, increasing=True).T, b).tolist(), b_h


def unipc_update(
    x: Tensor,
    a_s: float,
    a_u: float,
    lam_s: float,
    lam_u: float,
    m0: Tensor,
    others: list[tuple[Tensor, float]],
    variant: str,
) -> Tensor:
    """x_u from x_s, m₀ and the other predictions (m_k, λ_k) that the step uses."""
    if a_u >= 1:
        return m0
    h = lam_u - lam_s
    alpha_u = a_u**0.5
    out = (-alpha_u * math.expm1(-h) * m0).add_(x, alpha=((1 - a_u) / (1 - a_s)) ** 0.5)
    if others:
        rs = [(lam_k - lam_s) / h for _, lam_k in others]
        rhos, b_h = unipc_rhos(rs, h, variant)
        for rho, r, (m, _) in zip(rhos, rs, others):
            out.add_(m - m0, alpha=-alpha_u * b_h * rho / r)
    return out


@SAMPLERS.register("unipc", renoise=True)
def unipc(
    eps_fn: EpsFn,
    x: Tensor,
    grid: Tensor,
    schedule: Schedule,
    *,
    noise_sampler: NoiseSampler,
    callback: Callback | None = None,
    order: int = 2,
    variant: str = "bh2",
    corrector: bool = True,
    lower_order_final: bool = True,
) -> Tensor:
    """UniPC: UniP-``order`` predictor with the UniC corrector (``corrector=False``: UniP alone); NFE = steps."""
    if isinstance(order, bool) or order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
    if variant not in ("bh1", "bh2"):
        raise ValueError(f"variant must be 'bh1' or 'bh2', got {variant!r}")
    ab = schedule.alpha_bar(grid).tolist()
    lam = lambdas_of(ab)
    n = len(ab) - 1
    ms: list[Tensor] = []  # the re-noising data predictions m_0 … m_i, newest last (at most `order` kept)
    x_prev, m_prev, p_prev = x, x, 0
    for i in range(n):
        e, e_r = eps_pair(eps_fn, x, times_like(grid[i], x))
        m = denoise(x, e, ab[i])
        m_r = m if e_r is e else denoise(x, e_r, ab[i])
        if corrector and i > 0:  # UniC-p on the step just taken, with m_i
            older = [(ms[-1 - k], lam[i - 1 - k]) for k in range(1, p_prev)]
            x = unipc_update(x_prev, ab[i - 1], ab[i], lam[i - 1], lam[i], m_prev, older + [(m_r, lam[i])], variant)
        ms = (ms + [m_r])[-order:]
        p = min(order, i + 1, n - i if lower_order_final else order)
        x_prev, m_prev, p_prev = renoised(x, m, m_r, ab[i] ** 0.5), m, p
        x = unipc_update(
            x_prev, ab[i], ab[i + 1], lam[i], lam[i + 1], m, [(ms[-1 - k], lam[i - k]) for k in range(1, p)], variant
        )
        report(callback, i, grid, x, m)
    return x
