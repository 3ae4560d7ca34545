r"""Dynamic thresholding (Saharia et al. 2022, Imagen) of x̂_0, as a wrapper around any ε (guided or not).

    s = max(1, min(quantile_p(|x̂_0|), max_value)) per sample;   x̂_0 ← clip(x̂_0, −s, s) / s

then ε̂ = (x − α·x̂_0)/√(1−ᾱ). The same formula as diffusers' schedulers' ``thresholding=True``
(``dynamic_thresholding_ratio`` = p, ``sample_max_value``). Around CFG++ it thresholds the
denoising ε and keeps the re-noising one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..schedules import Schedule
from ..tensors import bcast
from .base import GUIDANCE, check_interval, inside, on_denoising_eps


def dynamic_threshold(x0: Tensor, percentile: float = 0.995, max_value: float = 1.0) -> Tensor:
    """x̂_0 [B, …] clipped to ±s and divided by s, s the per-sample p-quantile of |x̂_0| in [1, max_value]."""
    flat = x0.flatten(1)
    work = flat if flat.dtype in (torch.float32, torch.float64) else flat.float()
    s = torch.quantile(work.abs(), percentile, dim=1).clamp(min=1, max=max_value).unsqueeze(1)
    return (torch.clamp(work, -s, s) / s).to(x0.dtype).reshape(x0.shape)


@GUIDANCE.register("dynamic-thresholding", labels=False)
class DynamicThresholding:
    """Imagen's dynamic thresholding of x̂_0 (percentile p, max_value); compose it outside a guidance."""

    renoise = False
    zero_snr = False
    second_network = False
    wraps_renoise = True  # around CFG++ it thresholds the denoising ε and keeps the re-noising one

    def __init__(
        self, percentile: float = 0.995, max_value: float = 1.0, interval: tuple[float, float] | None = None
    ) -> None:
        if not 0 < percentile <= 1:
            raise ValueError(f"dynamic-thresholding percentile must lie in (0, 1], got {percentile!r}")
        if not max_value >= 1:
            raise ValueError(f"dynamic-thresholding max_value must be ≥ 1, got {max_value!r}")
        self.percentile, self.max_value, self.interval = float(percentile), float(max_value), check_interval(interval)

    def __call__(self, eps: Any, schedule: Schedule, backbone: Any = None) -> Any:
        def apply(x: Tensor, t: Tensor, e: Tensor) -> Tensor:
            alpha, std = bcast(schedule.alpha(t), x).to(x.dtype), bcast(schedule.std(t), x).to(x.dtype)
            x0 = dynamic_threshold((x - std * e) / alpha, self.percentile, self.max_value)
            return torch.where(bcast(inside(t, self.interval), x).bool(), (x - alpha * x0) / std, e)

        return on_denoising_eps(eps, apply)
