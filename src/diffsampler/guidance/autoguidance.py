r"""Autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of itself").

    ε̂ = ε_weak + w·(ε − ε_weak)

with ε_weak from a weaker model of the same family and conditioning (an earlier checkpoint or a
smaller net of the same training run). Both networks count as evaluations: NFE is two per step.
w = 1 is the model itself, w = 0 the weak model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..schedules import Schedule
from ..tensors import bcast
from .base import GUIDANCE, check_interval, check_scale, inside


@GUIDANCE.register("autoguidance", cli_models={"weak": "digits-weak"}, labels=False)
class AutoGuidance:
    """ε_weak + w(ε − ε_weak), ε_weak from a weaker model with the same conditioning."""

    renoise = False
    zero_snr = True  # a fixed mix of two predictions: x̂_0 mixes alike at zero SNR
    second_network = True

    def __init__(self, weak: Any, scale: float = 2.0, interval: tuple[float, float] | None = None) -> None:
        if not hasattr(weak, "eps"):
            raise TypeError(
                f"weak must be a backbone (with .eps), e.g. ds.bundled.load_model('digits-weak'); "
                f"got {type(weak).__name__}"
            )
        self.weak, self.scale, self.interval = weak, check_scale("autoguidance", scale), check_interval(interval)

    def __call__(self, eps: Any, schedule: Schedule, backbone: Any = None) -> Any:
        if not hasattr(eps, "of"):
            raise ValueError(
                "autoguidance evaluates its weak model through the network it wraps, which must "
                "offer eps.of(backbone) as sample's does: put it first in a compose"
            )
        weak = eps.of(self.weak)

        def guided(x: Tensor, t: Tensor, **cond: Any) -> Tensor:
            e = eps(x, t, **cond)
            on = inside(t, self.interval)
            if not bool(on.any()):
                return e
            e_w = weak(x, t, **cond)
            return torch.where(bcast(on, x).bool(), e_w + self.scale * (e - e_w), e)

        return guided
