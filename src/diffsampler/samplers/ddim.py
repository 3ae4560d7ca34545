r"""DDIM (Song, Meng & Ermon 2021), deterministic at η = 0 and ancestral (respaced DDPM) at η = 1.

From s to u:  σ = η·√((1−ᾱ_u)/(1−ᾱ_s))·√(1 − ᾱ_s/ᾱ_u),
              x_u = √ᾱ_u·x̂_0 + √(1−ᾱ_u−σ²)·ε + σ·z.
With ``set_alpha_to_one=False`` the last step ends at the first training knot instead of ᾱ = 1
(diffusers' ``set_alpha_to_one``). NFE = N.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..schedules import Schedule
from .base import Callback, EpsFn, NoiseSampler, denoise, times_like


def ddim(eps_fn: EpsFn, x: Tensor, grid: Tensor, schedule: Schedule, *, noise_sampler: NoiseSampler,
         callback: Callback | None = None, eta: float = 0.0, set_alpha_to_one: bool = True) -> Tensor:
    """DDIM with stochasticity η ≥ 0 (η = 1 is respaced DDPM); NFE = steps."""
    if not eta >= 0:
        raise ValueError(f"eta must be ≥ 0, got {eta!r}")
    ab = schedule.alpha_bar(grid).tolist()
    if not set_alpha_to_one and grid[-1] < schedule.t_min:
        ab[-1] = schedule.alpha_bar(schedule.t_min).item()
    for i in range(len(ab) - 1):
        a_s, a_u = ab[i], ab[i + 1]
        eps = eps_fn(x, times_like(grid[i], x))
        sigma = eta * ((1 - a_u) / (1 - a_s) * (1 - a_s / a_u)) ** 0.5
        # √ᾱ_u·x̂_0 + √(1−ᾱ_u−σ²)·ε with x̂_0 = (x − √(1−ᾱ_s)ε)/√ᾱ_s, as one fused update
        c_x = (a_u / a_s) ** 0.5
        c_eps = max(1 - a_u - sigma**2, 0.0) ** 0.5 - c_x * (1 - a_s) ** 0.5
        x_new = torch.add(x, eps, alpha=c_eps / c_x).mul_(c_x) if c_x != 0 else c_eps * eps
        if sigma > 0:
            x_new.add_(noise_sampler(x), alpha=sigma)
        if callback is not None:
            callback({"i": i, "t": grid[i].item(), "t_next": grid[i + 1].item(), "x": x_new,
                      "denoised": denoise(x, eps, a_s)})
        x = x_new
    return x


ddim.discrete = True  # type: ignore[attr-defined]
