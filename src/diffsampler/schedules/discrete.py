"""Discrete-time schedules given by T betas (DDPM, improved DDPM, Stable Diffusion, GeoDiff)."""

from __future__ import annotations

from typing import Any

import torch

from .base import DiscreteSchedule, cosine_alpha_bar, train_steps

__all__ = ["Linear", "ScaledLinear", "Cosine", "Sigmoid"]

_F64 = torch.float64


class _Named(DiscreteSchedule):
    """A discrete schedule whose config is its parameters, not its betas."""

    def __init__(self, betas: torch.Tensor, **params: Any) -> None:
        super().__init__(betas)
        self._params = params

    def config(self) -> dict[str, Any]:
        return {"num_train_timesteps": self.num_train_timesteps, **self._params}


class Linear(_Named):
    """DDPM (Ho et al. 2020): β_i = linspace(β_start, β_end, T), default 1e-4 → 0.02."""

    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> None:
        betas = torch.linspace(beta_start, beta_end, train_steps(num_train_timesteps), dtype=_F64)
        super().__init__(betas, beta_start=beta_start, beta_end=beta_end)


class ScaledLinear(_Named):
    """Latent diffusion / Stable Diffusion: β_i = linspace(√β_start, √β_end, T)²."""

    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> None:
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, train_steps(num_train_timesteps), dtype=_F64) ** 2
        super().__init__(betas, beta_start=beta_start, beta_end=beta_end)


class Cosine(_Named):
    """Nichol & Dhariwal 2021: β_i = min(1 − f((i+1)/T)/f(i/T), 0.999), f(u) = cos²((u+s)/(1+s)·π/2)."""

    def __init__(self, num_train_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> None:
        u = torch.arange(train_steps(num_train_timesteps) + 1, dtype=_F64) / train_steps(num_train_timesteps)
        f = cosine_alpha_bar(u, s)
        betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
        super().__init__(betas, s=s, max_beta=max_beta)


class Sigmoid(_Named):
    """Sigmoid-spaced betas (GeoDiff, tutorials): β = sigmoid(linspace(−6, 6, T))·(β_end − β_start) + β_start."""

    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> None:
        x = torch.linspace(-6, 6, train_steps(num_train_timesteps), dtype=_F64)
        betas = torch.sigmoid(x) * (beta_end - beta_start) + beta_start
        super().__init__(betas, beta_start=beta_start, beta_end=beta_end)
