r"""CFG-Zero* (Fan et al. 2025): classifier-free guidance from an optimally scaled unconditional prediction.

    s* = ⟨ε_c, ε_u⟩ / ‖ε_u‖²  (per sample),   ε̂ = s*·ε_u + w·(ε_c − s*·ε_u)

and, for the first ``zero_init_steps`` evaluation times, the zero initialisation: the prediction of
x̂_0 is set to 0 (ε̂ = x/√(1−ᾱ)), which for an ε-model is what a zero velocity is for the paper's flow
models: the step keeps the sample where it is, up to the schedule's rescaling. diffusers'
``ClassifierFreeZeroStarGuidance`` zeroes the raw prediction (a flow model's velocity) on its first
step by default; here ``zero_init_steps`` defaults to 0, since a zero ε is not a neutral step.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ..schedules import Schedule
from ..tensors import bcast
from .base import GUIDANCE
from .cfg import CFG


@GUIDANCE.register("cfg-zero-star")
class CFGZeroStar(CFG):
    """CFG from s*·ε_u, s* = ⟨ε_c, ε_u⟩/‖ε_u‖² per sample; optionally x̂_0 = 0 at the first evaluation times."""

    linear = False

    def __init__(
        self,
        scale: float = 3.0,
        zero_init_steps: int = 0,
        interval: tuple[float, float] | None = None,
        null_label: int | None = None,
        label_key: str = "class_labels",
    ) -> None:
        super().__init__(scale=scale, interval=interval, null_label=null_label, label_key=label_key)
        if isinstance(zero_init_steps, bool) or not isinstance(zero_init_steps, int) or zero_init_steps < 0:
            raise ValueError(f"zero_init_steps must be an integer ≥ 0, got {zero_init_steps!r}")
        self.zero_init_steps = zero_init_steps

    def combine(
        self, e_c: Tensor, e_u: Tensor, x: Tensor, t: Tensor, schedule: Schedule, state: dict[str, Any]
    ) -> Tensor:
        seen = state.setdefault("times", [])
        now = float(t.reshape(-1)[0])
        if now not in seen:
            seen.append(now)
        if seen.index(now) < self.zero_init_steps:
            return x / bcast(schedule.std(t), x).to(x.dtype)
        c, u = e_c.flatten(1).float(), e_u.flatten(1).float()
        star = ((c * u).sum(1, keepdim=True) / ((u * u).sum(1, keepdim=True) + 1e-8)).to(e_u.dtype)
        scaled = e_u * star.view(-1, *(1,) * (e_u.dim() - 1))
        return scaled + self.scale * (e_c - scaled)
