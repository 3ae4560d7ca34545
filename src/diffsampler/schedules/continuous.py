"""Continuous-time schedules with closed-form ᾱ(t) and λ⁻¹."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.nn.functional import logsigmoid

from .base import Schedule, as_time

__all__ = ["VPContinuous", "SigmoidAlphaBar"]


class VPContinuous(Schedule):
    """Score-SDE VP (Song et al. 2021): β(t) = β_min + t(β_max − β_min), log ᾱ = −β_min·t − ½(β_max − β_min)t²."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, num_train_timesteps: int = 1000) -> None:
        if not 0 <= beta_min < beta_max:
            raise ValueError(f"need 0 ≤ beta_min < beta_max, got beta_min={beta_min}, beta_max={beta_max}")
        super().__init__(num_train_timesteps)
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def log_alpha_bar(self, t: float | Tensor) -> Tensor:
        t = as_time(t)
        return -self.beta_min * t - 0.5 * (self.beta_max - self.beta_min) * t**2

    def t_from_log_snr(self, lam: float | Tensor) -> Tensor:
        la, d = logsigmoid(as_time(lam)), self.beta_max - self.beta_min
        return (torch.sqrt(self.beta_min**2 - 2 * d * la) - self.beta_min) / d

    def config(self) -> dict[str, Any]:
        return {"beta_min": self.beta_min, "beta_max": self.beta_max, **super().config()}


class SigmoidAlphaBar(Schedule):
    """Jabri et al. 2022: ᾱ(t) = (s(end/τ) − s((t(end−start)+start)/τ)) / (s(end/τ) − s(start/τ)), s = sigmoid.

    ᾱ is clipped below at ``clip_min``.
    """

    def __init__(
        self,
        start: float = -3.0,
        end: float = 3.0,
        tau: float = 1.0,
        clip_min: float = 1e-9,
        num_train_timesteps: int = 1000,
    ) -> None:
        if not (start < end and tau > 0 and 0 < clip_min < 1):
            raise ValueError(
                f"need start < end, tau > 0, 0 < clip_min < 1; got start={start}, end={end}, "
                f"tau={tau}, clip_min={clip_min}"
            )
        super().__init__(num_train_timesteps)
        self.start, self.end, self.tau, self.clip_min = float(start), float(end), float(tau), float(clip_min)
        self._v_start = 1 / (1 + math.exp(-start / tau))
        self._v_end = 1 / (1 + math.exp(-end / tau))

    def log_alpha_bar(self, t: float | Tensor) -> Tensor:
        z = (as_time(t) * (self.end - self.start) + self.start) / self.tau
        ab = (self._v_end - torch.sigmoid(z)) / (self._v_end - self._v_start)
        return ab.clamp(self.clip_min, 1.0).log()

    def t_from_log_snr(self, lam: float | Tensor) -> Tensor:
        ab = torch.sigmoid(as_time(lam)).clamp(self.clip_min, 1.0)
        v = self._v_end - ab * (self._v_end - self._v_start)
        return ((self.tau * torch.logit(v) - self.start) / (self.end - self.start)).clamp(0.0, 1.0)

    def config(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "tau": self.tau, "clip_min": self.clip_min, **super().config()}
