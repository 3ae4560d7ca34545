r"""Schedules beyond variance preserving: VE/EDM and rectified flow, as scaled VP equivalents.

Each states a(t), b(t) of x_t = a·x_0 + b·ε, and from them the VP equivalent of the same log-SNR:
ᾱ = a²/(a² + b²), s = √(a² + b²) (see ``schedules.base``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from . import SCHEDULES
from .base import Schedule, as_time

__all__ = ["VE", "RectifiedFlow"]


@SCHEDULES.register("ve")
class VE(Schedule):
    """Variance exploding / EDM (Karras et al. 2022): x_t = x_0 + σ(t)·ε, σ(t) = σ_max·t.

    ᾱ = 1/(1 + σ²), s = √(1 + σ²). The network takes σ (EDM's and k-diffusion's convention); the lowest
    trained level σ_min sits at t_min = σ_min/σ_max. Sampled on Karras et al.'s σ spacing unless asked.
    """

    variance_preserving = False
    default_spacing = "karras"

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, num_train_timesteps: int = 1000) -> None:
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
        super().__init__(num_train_timesteps)
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)

    def sigma(self, t: float | Tensor) -> Tensor:
        """σ(t) = σ_max·t."""
        return as_time(t) * self.sigma_max

    def log_alpha_bar(self, t: float | Tensor) -> Tensor:
        return -torch.log1p(self.sigma(t) ** 2)

    def log_snr(self, t: float | Tensor) -> Tensor:
        return -2.0 * torch.log(self.sigma(t))

    def t_from_log_snr(self, lam: float | Tensor) -> Tensor:
        return (-0.5 * as_time(lam)).exp() / self.sigma_max

    def scale(self, t: float | Tensor) -> Tensor:
        return torch.sqrt(1.0 + self.sigma(t) ** 2)

    def signal(self, t: float | Tensor) -> Tensor:
        return torch.ones_like(as_time(t))

    def noise(self, t: float | Tensor) -> Tensor:
        return self.sigma(t)

    @property
    def t_min(self) -> float:
        return self.sigma_min / self.sigma_max

    def model_time(self, t: Tensor) -> Tensor:
        """σ(t): EDM networks take the noise level itself."""
        return t * self.sigma_max

    def config(self) -> dict[str, Any]:
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max, **super().config()}


@SCHEDULES.register("rectified-flow")
class RectifiedFlow(Schedule):
    """Rectified flow (Liu et al. 2023; Esser et al. 2024, SD3): x_t = (1 − t)·x_0 + t·ε.

    λ = 2·log((1−t)/t), ᾱ = (1−t)²/((1−t)² + t²), s = √((1−t)² + t²); t = 1 is pure noise (zero SNR). The
    network takes t·T (diffusers' timestep σ·T). ``shift`` is SD3's time shift t ↦ shift·t/(1 + (shift−1)·t),
    that the ``shifted-uniform`` (default) and ``flow`` spacings apply; ``flow`` is diffusers'
    ``FlowMatchEulerDiscreteScheduler`` grid, whose last step before t = 0 starts at about 1/T: too short an
    interval in λ for multistep solvers to extrapolate across, so it is not the default.
    """

    variance_preserving = False
    default_spacing = "shifted-uniform"

    def __init__(self, shift: float = 1.0, num_train_timesteps: int = 1000) -> None:
        if not shift > 0:
            raise ValueError(f"shift must be > 0, got {shift!r}")
        super().__init__(num_train_timesteps)
        self.shift = float(shift)

    def log_alpha_bar(self, t: float | Tensor) -> Tensor:
        t = as_time(t)
        return 2.0 * torch.log1p(-t) - torch.log((1 - t) ** 2 + t**2)

    def log_snr(self, t: float | Tensor) -> Tensor:
        t = as_time(t)
        return 2.0 * (torch.log1p(-t) - torch.log(t))

    def t_from_log_snr(self, lam: float | Tensor) -> Tensor:
        return torch.sigmoid(-0.5 * as_time(lam))

    def sigma(self, t: float | Tensor) -> Tensor:
        """EDM σ = b/a = t/(1 − t)."""
        t = as_time(t)
        return t / (1 - t)

    def scale(self, t: float | Tensor) -> Tensor:
        t = as_time(t)
        return torch.sqrt((1 - t) ** 2 + t**2)

    def signal(self, t: float | Tensor) -> Tensor:
        return 1 - as_time(t)

    def noise(self, t: float | Tensor) -> Tensor:
        return as_time(t).clone()

    def model_time(self, t: Tensor) -> Tensor:
        """t·T, diffusers' flow-matching timestep."""
        return t * self.num_train_timesteps

    def shifted(self, t: Tensor) -> Tensor:
        """SD3's shift·t/(1 + (shift − 1)·t)."""
        return self.shift * t / (1 + (self.shift - 1) * t)

    def config(self) -> dict[str, Any]:
        return {"shift": self.shift, **super().config()}
