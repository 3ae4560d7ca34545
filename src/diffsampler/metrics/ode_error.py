"""Distance to the exact probability-flow ODE solution from the same starting noise."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor

from ..sampling import sample
from .base import METRICS, Metric

__all__ = ["ode_error_metric"]


@METRICS.register("ode-error", label="mean distance to the exact PF-ODE solution")
def ode_error(backbone: Any, schedule: Any = None, *, tol: float = 1e-6) -> Metric:
    """Mean distance to a tight rk45 PF-ODE solution from the same x_T."""
    return ode_error_metric(backbone, schedule, tol)


def ode_error_metric(backbone: Any, schedule: Any = None, tol: float = 1e-6, batch_size: int = 100) -> Metric:
    """Mean ‖x − x_ref‖ to a tight rk45 PF-ODE solution from the same x_T (computed once, then cached)."""
    cache: dict[str, Tensor] = {}

    def reference(x_T: Tensor) -> Tensor:
        if "x_T" not in cache or not torch.equal(cache["x_T"], x_T):
            sched = schedule if schedule is not None else backbone.schedule
            # from zero SNR sample() steps first to the grid's second time, exactly only for a short step
            zero = sched is not None and sched.alpha_bar(1.0).item() == 0
            grid = {"grid": [1.0, 1 - 1e-6, 0.0]} if zero else {"steps": 2}
            parts = [
                sample(
                    backbone,
                    schedule=schedule,
                    sampler="pf-ode",
                    method="rk45",
                    rtol=tol,
                    atol=tol,
                    x_T=x_T[i : i + batch_size].double(),
                    **grid,
                ).float()
                for i in range(0, len(x_T), batch_size)
            ]
            cache.update(x_T=x_T, ref=torch.cat(parts))
        return cache["ref"]

    def distances(x: Tensor, x_T: Tensor) -> Tensor:
        return (x - reference(x_T)).reshape(x.shape[0], -1).to(torch.float64).norm(dim=1)

    def statistic(x: Tensor, labels: Tensor | None, x_T: Tensor) -> Callable[[Tensor], float]:
        d = distances(x, x_T)
        return lambda i: float(d[i].mean())

    def score(x: Tensor, labels: Tensor | None, x_T: Tensor) -> tuple[float, float, dict[str, float]]:
        d = distances(x, x_T)
        return float(d.mean()), float(d.std() / math.sqrt(len(d))), {}

    return Metric("ode-error", score, needs_x_T=True, statistic=statistic)
