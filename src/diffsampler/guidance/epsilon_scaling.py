r"""Epsilon scaling (Ning et al. 2024, "Elucidating the exposure bias in diffusion models"), around any ε.

    ε̂ = ε / λ(t),   λ(t) = scale + slope·t

The network's ε is shrunk a little at every step, against the exposure bias of sampling: λ = 1.005 constant is
ComfyUI's ``EpsilonScaling`` node (which divides x − D(x), i.e. σ·ε, by it after CFG); ``slope`` gives the
paper's linear schedule in continuous t. Around CFG++ it scales the denoising ε and keeps the re-noising one.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..schedules import Schedule
from ..tensors import bcast
from .base import GUIDANCE, check_interval, inside, on_denoising_eps


@GUIDANCE.register("epsilon-scaling", labels=False)
class EpsilonScaling:
    """ε / (scale + slope·t): the network's ε shrunk by λ(t) (default 1.005 at every t); compose it outside."""

    renoise = False
    zero_snr = False
    second_network = False
    wraps_renoise = True

    def __init__(self, scale: float = 1.005, slope: float = 0.0, interval: tuple[float, float] | None = None) -> None:
        for name, value in (("scale", scale), ("slope", slope)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"epsilon-scaling {name} must be a finite number, got {value!r}")
        if not (scale > 0 and scale + slope > 0):
            raise ValueError(
                f"epsilon-scaling needs λ(t) = scale + slope·t > 0 on [0, 1], got scale={scale}, slope={slope}"
            )
        self.scale, self.slope, self.interval = float(scale), float(slope), check_interval(interval)

    def __call__(self, eps: Any, schedule: Schedule, backbone: Any = None) -> Any:
        def apply(x: Tensor, t: Tensor, e: Tensor) -> Tensor:
            lam = bcast(self.scale + self.slope * t, x).to(e.dtype)
            return torch.where(bcast(inside(t, self.interval), x).bool(), e / lam, e)

        return on_denoising_eps(eps, apply)
