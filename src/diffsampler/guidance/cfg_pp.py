r"""CFG++ (Chung et al. 2024, "CFG++: manifold-constrained classifier free guidance").

    ε_λ = ε_u + λ·(ε_c − ε_u);   x̂_0 = (x_t − σ_t·ε_λ)/α_t;   x_s = α_s·x̂_0 + σ_s·ε_u

The guided ε gives the denoised prediction, the unconditional ε re-noises it (the official
``ddim_cfg++`` solver). λ lives in [0, 1] (the paper uses 0.2–0.8; λ = 0 is unconditional
sampling); it is not CFG's w: λ = 1 takes x̂_0 from the conditional ε and re-noises with the
unconditional one. The guided function returns the pair (ε_λ, ε_u) (``renoise = True``), so only
samplers that re-noise with a second ε run it (``renoise=True``: ddim, euler, euler-ancestral,
dpm-solver++, unipc); ``sample`` refuses the others.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..schedules import Schedule
from ..tensors import bcast
from .base import GUIDANCE, inside
from .cfg import CFG, without_negatives


@GUIDANCE.register("cfg-pp")
class CFGPP(CFG):
    """CFG++: x̂_0 from ε_u + λ(ε_c − ε_u), re-noised with ε_u; one doubled batch per step."""

    renoise = True

    def __init__(
        self,
        scale: float = 0.6,
        interval: tuple[float, float] | None = None,
        null_label: int | None = None,
        label_key: str = "class_labels",
    ) -> None:
        super().__init__(scale=scale, interval=interval, null_label=null_label, label_key=label_key)

    def __call__(self, eps: Any, schedule: Schedule, backbone: Any = None) -> Any:
        def guided(x: Tensor, t: Tensor, **cond: Any) -> tuple[Tensor, Tensor]:
            on = inside(t, self.interval)
            if not bool(on.any()):
                e = eps(x, t, **without_negatives(cond))
                return e, e
            e_c, e_u = eps(torch.cat([x, x]), torch.cat([t, t]), **self._halves(x, cond, backbone)).chunk(2)
            mask = bcast(on, x).bool()
            return torch.where(mask, e_u + self.scale * (e_c - e_u), e_c), torch.where(mask, e_u, e_c)

        return guided
