r"""DPM-Solver++(2M) SDE and (3M) SDE (Lu et al. 2022; k-diffusion's ``sample_dpmpp_2m_sde`` / ``_3m_sde``).

In y = x/√ᾱ with σ = √((1−ᾱ)/ᾱ), D(y; σ) = x̂_0 and h = log(σ_i/σ_{i+1}) (a step in λ), the SDE
step of stochasticity η is the exponential integrator over h(1 + η) plus fresh noise:

    y_{i+1} = (σ_{i+1}/σ_i)·e^{−ηh}·y_i + (1 − e^{−(1+η)h})·D_i + corrections
              + s_noise·σ_{i+1}·√(1 − e^{−2ηh})·z,

with the multistep corrections from earlier D's: order 2, ``midpoint`` ½(1 − e^{−h_η})·(D_i − D_{i−1})/r
or ``heun`` ((1 − e^{−h_η})/h_η … ) (r = h_{i−1}/h, h_η = (1+η)h); order 3 as DPM-Solver++(3M) with
φ₂ = (e^{−h_η} − 1)/h_η + 1 and φ₃ = φ₂/h_η − ½. A step into σ = 0 returns D. η = 0 is the ODE
solver. NFE = N.
"""

from __future__ import annotations

import math

from torch import Tensor

from ..schedules import Schedule
from .base import SAMPLERS, Callback, EpsFn, NoiseSampler, edm_denoiser, report, sigmas_of

SOLVER_TYPES = ("midpoint", "heun")


@SAMPLERS.register("dpm-solver++-sde")
def dpm_solver_pp_sde(
    eps_fn: EpsFn,
    x: Tensor,
    grid: Tensor,
    schedule: Schedule,
    *,
    noise_sampler: NoiseSampler,
    callback: Callback | None = None,
    order: int = 2,
    eta: float = 1.0,
    s_noise: float = 1.0,
    solver_type: str = "midpoint",
) -> Tensor:
    """DPM-Solver++(2M) SDE (order 2) or (3M) SDE (order 3), stochasticity η (0: the ODE solver); NFE = steps."""
    if order not in (2, 3):
        raise ValueError(f"order must be 2 or 3, got {order!r}")
    if solver_type not in SOLVER_TYPES:
        raise ValueError(f"unknown solver_type {solver_type!r}; known: {', '.join(SOLVER_TYPES)}")
    if not eta >= 0:
        raise ValueError(f"eta must be ≥ 0, got {eta!r}")
    D = edm_denoiser(eps_fn, schedule)
    sig = sigmas_of(grid, schedule)
    y = x * math.sqrt(1 + sig[0] ** 2)
    ds: list[Tensor] = []  # denoised estimates, newest last
    hs: list[float] = []
    for i in range(len(sig) - 1):
        d0 = D(y, sig[i])
        if sig[i + 1] == 0:
            y_new, h = d0, math.inf
        else:
            h = math.log(sig[i] / sig[i + 1])
            h_eta = h * (1 + eta)
            y_new = (math.exp(-h_eta) * y).add_(d0, alpha=-math.expm1(-h_eta))
            phi2 = math.expm1(-h_eta) / h_eta + 1
            if order == 2 and ds:
                c = 0.5 * -math.expm1(-h_eta) if solver_type == "midpoint" else -math.expm1(-h_eta) / -h_eta + 1
                y_new.add_(d0 - ds[-1], alpha=c * h / hs[-1])
            elif order == 3 and len(ds) >= 2:
                r0, r1 = hs[-1] / h, hs[-2] / h
                d1_0, d1_1 = (d0 - ds[-1]) / r0, (ds[-1] - ds[-2]) / r1
                d2 = (d1_0 - d1_1) / (r0 + r1)
                y_new.add_(d1_0 + r0 * d2, alpha=phi2).add_(d2, alpha=-(phi2 / h_eta - 0.5))
            elif order == 3 and ds:
                y_new.add_(d0 - ds[-1], alpha=phi2 * h / hs[-1])
            if eta > 0:
                y_new.add_(noise_sampler(y), alpha=s_noise * sig[i + 1] * math.sqrt(-math.expm1(-2 * eta * h)))
        report(callback, i, grid, y_new / math.sqrt(1 + sig[i + 1] ** 2), d0)
        ds, hs, y = (ds + [d0])[-2:], (hs + [h])[-2:], y_new
    return y / math.sqrt(1 + sig[-1] ** 2)
