r"""Adaptive projected guidance (Sadat et al. 2024, "Eliminating oversaturation and artifacts of high guidance scales").

    Δ = D_c − D_u;  Δ ← Δ + β·Δ_prev (momentum);  Δ ← Δ·min(1, r/‖Δ‖);
    Δ = Δ_∥ + Δ_⊥ (parallel and orthogonal to D_c);  D̂ = D_u + w·(Δ_⊥ + η·Δ_∥)

D is the denoised prediction x̂_0 by default (``space="x0"``, as the paper), or ε itself
(``space="eps"``, as diffusers' ``AdaptiveProjectedGuidance`` guider, whose defaults are
η = 1 and r = 15). With η = 1, r = 0 and β = 0 it is CFG with scale w in either space.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..schedules import Schedule
from ..tensors import bcast
from .base import GUIDANCE
from .cfg import CFG


@GUIDANCE.register("apg")
class APG(CFG):
    """Adaptive projected guidance: CFG's update split along D_c, the parallel part scaled by η, its norm capped."""

    linear = False

    def __init__(
        self,
        scale: float = 3.0,
        eta: float = 0.0,
        norm_threshold: float = 0.0,
        momentum: float = 0.0,
        space: str = "x0",
        interval: tuple[float, float] | None = None,
        null_label: int | None = None,
        label_key: str = "class_labels",
    ) -> None:
        super().__init__(scale=scale, interval=interval, null_label=null_label, label_key=label_key)
        if space not in ("x0", "eps"):
            raise ValueError(f"apg space must be x0 or eps, got {space!r}")
        if not norm_threshold >= 0:
            raise ValueError(f"apg norm_threshold must be ≥ 0 (0: off), got {norm_threshold!r}")
        self.eta, self.norm_threshold, self.momentum, self.space = (
            float(eta),
            float(norm_threshold),
            float(momentum),
            space,
        )

    def combine(
        self, e_c: Tensor, e_u: Tensor, x: Tensor, t: Tensor, schedule: Schedule, state: dict[str, Any]
    ) -> Tensor:
        if self.space == "x0":
            alpha, std = bcast(schedule.alpha(t), x).to(x.dtype), bcast(schedule.std(t), x).to(x.dtype)
            d_c, d_u = (x - std * e_c) / alpha, (x - std * e_u) / alpha
        else:
            d_c, d_u = e_c, e_u
        diff = d_c - d_u
        if self.momentum != 0:
            average = state.get("average", 0)
            if isinstance(average, Tensor) and average.shape != diff.shape:
                raise ValueError(
                    f"apg's momentum={self.momentum} keeps one average per sample, but this step evaluates "
                    f"{diff.shape[0]} of {average.shape[0]} samples (an adaptive sampler stops the finished ones): "
                    f"use momentum=0 with it"
                )
            diff = diff + self.momentum * average
            state["average"] = diff
        dims = list(range(1, x.dim()))
        if self.norm_threshold > 0:
            diff = diff * (self.norm_threshold / diff.norm(p=2, dim=dims, keepdim=True)).clamp(max=1)
        unit = torch.nn.functional.normalize(d_c.double(), dim=dims)
        parallel = ((diff.double() * unit).sum(dim=dims, keepdim=True) * unit).to(diff.dtype)
        guided = d_u + self.scale * (diff - parallel + self.eta * parallel)
        return guided if self.space == "eps" else (x - alpha * guided) / std
