r"""Spacings of the newer collections (ComfyUI, k-diffusion, Mochi), each as its source defines it.

In EDM σ = √((1−ᾱ)/ᾱ) between σ_min = σ(1/T) and σ_max = σ(1), r_k = k/(N−1):

- ``linear-quadratic`` (Mochi; ComfyUI): s_k = k·τ/L for k < L = ⌊N/2⌋, then the quadratic through (L, τ) with
  the same slope that reaches 1 at k = N; t_k = 1 − s_k on a flow (zero SNR at t = 1: Mochi's own), and
  σ_k = σ_max·(1 − s_k) otherwise, as ComfyUI scales it; τ = ``threshold_noise`` = 0.025.
- ``laplace`` (Tiankai et al. 2024; ComfyUI): log σ_k = μ − β·sign(½ − r_k)·log(1 − 2|½ − r_k| + 10⁻⁵), clamped
  to [σ_min, σ_max]: the Laplace(μ, β) quantiles of 1 − r_k.
- ``vp`` (k-diffusion's ``get_sigmas_vp``): σ_k = √(exp(β_d·u_k²/2 + β_min·u_k) − 1), u = linspace(1, ε_s, N),
  the continuous VP-SDE's levels (β_d = 19.9, β_min = 0.1, ε_s = 10⁻³).
- ``beta57``: ``beta`` with α = 0.5, β = 0.7 (RES4LYF's name).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import Schedule
from .grids import SPACINGS, _sigma_range, _sigmas_to_t, beta


def linear_quadratic_levels(steps: int, threshold_noise: float = 0.025, linear_steps: int | None = None) -> Tensor:
    """Mochi's N levels 1 − s_k falling from 1 (see the module docstring), without the final 0."""
    if steps == 1:
        return torch.ones(1, dtype=torch.float64)
    lin = steps // 2 if linear_steps is None else linear_steps
    if not 0 < lin < steps:
        raise ValueError(f"linear_steps must be between 1 and steps − 1 = {steps - 1}, got {lin}")
    quad = steps - lin
    diff = lin - threshold_noise * steps
    a = diff / (lin * quad**2)
    b = threshold_noise / lin - 2 * diff / quad**2
    k = torch.arange(steps, dtype=torch.float64)
    s = torch.where(k < lin, k * threshold_noise / lin, a * k**2 + b * k + a * lin**2)
    return 1 - s


@SPACINGS.register("linear-quadratic")
def linear_quadratic(
    schedule: Schedule, steps: int, *, threshold_noise: float = 0.025, linear_steps: int | None = None
) -> Tensor:
    """Mochi's linear-then-quadratic levels: flow times where σ(1) = ∞, else σ_max·(1 − s_k) as ComfyUI."""
    if not 0 < threshold_noise < 1:
        raise ValueError(f"linear-quadratic needs 0 < threshold_noise < 1, got {threshold_noise}")
    levels = linear_quadratic_levels(steps, threshold_noise, linear_steps)
    top = schedule.sigma(1.0).item()
    if not math.isfinite(top):  # a flow: the levels are its times
        return levels
    return _sigmas_to_t(schedule, top * levels, "'linear-quadratic'")


@SPACINGS.register("laplace")
def laplace(
    schedule: Schedule,
    steps: int,
    *,
    mu: float = 0.0,
    beta: float = 0.5,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
) -> Tensor:
    """ComfyUI's ``get_sigmas_laplace``: log σ at the Laplace(μ, β) quantiles of 1 − r_k, clamped to the range."""
    if not beta > 0:
        raise ValueError(f"spacing 'laplace' needs beta > 0, got beta={beta}")
    lo, hi = _sigma_range(schedule, sigma_min, sigma_max, "laplace")
    r = torch.linspace(0, 1, steps, dtype=torch.float64)
    lam = mu - beta * torch.sign(0.5 - r) * torch.log(1 - 2 * (0.5 - r).abs() + 1e-5)
    return _sigmas_to_t(schedule, lam.exp().clamp(lo, hi), "'laplace'")


@SPACINGS.register("vp")
def vp(schedule: Schedule, steps: int, *, beta_d: float = 19.9, beta_min: float = 0.1, eps_s: float = 1e-3) -> Tensor:
    """k-diffusion's ``get_sigmas_vp``: σ_k = √(exp(β_d·u²/2 + β_min·u) − 1), u = linspace(1, ε_s, N)."""
    u = torch.linspace(1, eps_s, steps, dtype=torch.float64)
    return _sigmas_to_t(schedule, torch.expm1(beta_d * u**2 / 2 + beta_min * u).sqrt(), "'vp'")


@SPACINGS.register("beta57")
def beta57(schedule: Schedule, steps: int) -> Tensor:
    """``beta`` with α = 0.5, β = 0.7."""
    return beta(schedule, steps, alpha=0.5, beta=0.7)
