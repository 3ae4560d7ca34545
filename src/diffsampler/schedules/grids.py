r"""Time grids: where a sampler evaluates the model.

A grid is a strictly decreasing float64 tensor t_0 > t_1 > … > t_N of N+1 times: N steps.
A *spacing* chooses the N start times t_0 … t_{N−1}; ``make_grid`` ends every grid at t_N = 0
(ᾱ = 1, fully denoised). A grid handed to ``sample(grid=…)`` may end earlier, at the first
training knot t = 1/T for instance, and the samplers then return x at that noise level.

Index spacings (diffusers-compatible, on training indices i, t = (i+1)/T, N ≤ T):
``leading`` i = k·⌊T/N⌋ + offset; ``trailing`` i = round(T − k·T/N) − 1;
``linspace`` i = round(linspace(0, T−1, N)); ``quadratic`` (DDIM) i = ⌊linspace(0, √(0.8T), N)²⌋.
Continuous spacings: ``uniform`` in t on [0, 1]; ``logsnr`` uniform in λ between λ(1) and
λ(1/T); ``karras`` σ_k = (σ_max^{1/ρ} + k/(N−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, ρ = 7.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from ..registry import Registry
from .base import Schedule, as_time

__all__ = ["SPACINGS", "make_grid", "check_grid", "karras_sigmas"]

Spacing = Callable[..., Tensor]
SPACINGS: Registry[Spacing] = Registry("spacing", "spacings")


def _indices(schedule: Schedule, idx: Tensor) -> Tensor:
    return schedule.index_to_t(idx.to(torch.float64))


def _check_index_steps(schedule: Schedule, steps: int, spacing: str) -> None:
    if steps > schedule.num_train_timesteps:
        raise ValueError(f"steps={steps} is more than the schedule's {schedule.num_train_timesteps} "
                         f"training steps (spacing {spacing!r} picks training indices)")


@SPACINGS.register("leading")
def leading(schedule: Schedule, steps: int, steps_offset: int = 0) -> Tensor:
    """Training indices k·⌊T/N⌋ + offset (diffusers' default for DDPM/DDIM)."""
    _check_index_steps(schedule, steps, "leading")
    idx = torch.arange(steps - 1, -1, -1) * (schedule.num_train_timesteps // steps) + steps_offset
    return _indices(schedule, idx)


@SPACINGS.register("trailing")
def trailing(schedule: Schedule, steps: int) -> Tensor:
    """Training indices round(T − k·T/N) − 1: starts at the last training step (Lin et al. 2024)."""
    _check_index_steps(schedule, steps, "trailing")
    T = schedule.num_train_timesteps
    idx = torch.tensor([round(T - k * T / steps) - 1 for k in range(steps)])
    return _indices(schedule, idx)


@SPACINGS.register("linspace")
def linspace(schedule: Schedule, steps: int) -> Tensor:
    """Training indices round(linspace(0, T−1, N)), reversed."""
    _check_index_steps(schedule, steps, "linspace")
    idx = torch.linspace(0, schedule.num_train_timesteps - 1, steps, dtype=torch.float64).round().flip(0)
    return _indices(schedule, idx)


@SPACINGS.register("quadratic")
def quadratic(schedule: Schedule, steps: int) -> Tensor:
    """DDIM's quadratic indices ⌊linspace(0, √(0.8T), N)²⌋, reversed (Song et al. 2021)."""
    _check_index_steps(schedule, steps, "quadratic")
    idx = (torch.linspace(0, math.sqrt(0.8 * schedule.num_train_timesteps), steps, dtype=torch.float64) ** 2)
    return _indices(schedule, idx.floor().flip(0))


@SPACINGS.register("uniform")
def uniform(schedule: Schedule, steps: int) -> Tensor:
    """Equal steps in continuous t from 1 down to 0."""
    return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)[:-1]


@SPACINGS.register("logsnr")
def logsnr(schedule: Schedule, steps: int) -> Tensor:
    """Equal steps in log-SNR λ from λ(1) to λ(1/T) (as DPM-Solver's ``logSNR`` skip)."""
    lam = torch.linspace(schedule.log_snr(1.0).item(), schedule.log_snr(schedule.t_min).item(), steps,
                         dtype=torch.float64)
    return schedule.t_from_log_snr(lam)


@SPACINGS.register("karras")
def karras(schedule: Schedule, steps: int, rho: float = 7.0, sigma_min: float | None = None,
           sigma_max: float | None = None) -> Tensor:
    """Karras et al. 2022: σ_k = (σ_max^{1/ρ} + k/(N−1)(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ in EDM σ = √((1−ᾱ)/ᾱ)."""
    lo = schedule.sigma(schedule.t_min).item() if sigma_min is None else sigma_min
    hi = schedule.sigma(1.0).item() if sigma_max is None else sigma_max
    return schedule.t_from_sigma(karras_sigmas(steps, lo, hi, rho))


def karras_sigmas(count: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """``count`` noise levels from σ_max down to σ_min, equally spaced in σ^{1/ρ} (Karras et al. 2022)."""
    ramp = torch.linspace(0, 1, count, dtype=torch.float64)
    return (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho


def check_grid(grid: Tensor) -> Tensor:
    """Validate a grid: 1-D, at least two times, strictly decreasing, inside [0, 1]."""
    grid = as_time(grid)
    if grid.dim() != 1:
        raise ValueError(f"a grid is a 1-D sequence of times, got shape {tuple(grid.shape)}")
    if grid.numel() < 2:
        raise ValueError(f"a grid needs at least 2 times (1 step), got {grid.numel()}")
    if not torch.all(grid[1:] < grid[:-1]):
        raise ValueError(f"grid times must be strictly decreasing, got {grid.tolist()}")
    if grid[-1] < 0 or grid[0] > 1:
        raise ValueError(f"grid times must lie in [0, 1], got {grid[-1].item()} … {grid[0].item()}")
    return grid


def make_grid(schedule: Schedule, steps: int, spacing: str = "trailing", **options: float) -> Tensor:
    """A decreasing grid of ``steps + 1`` times: ``steps`` start times from ``spacing``, then t = 0."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer ≥ 1, got {steps!r}")
    starts = SPACINGS.get(spacing)(schedule, steps, **options)
    return check_grid(torch.cat([starts, torch.zeros(1, dtype=torch.float64)]))
