"""What a metric is: a named score of samples, lower is better, with a bootstrap standard error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from ..registry import Registry
from .frechet import frechet_distance, gaussian_stats

__all__ = ["METRICS", "Metric", "MetricFactory", "bootstrap", "fd_metric", "classifier_features"]


@dataclass
class Metric:
    """A named quality measure: ``score(samples, labels, x_T) -> (value, stderr, extra)``; lower is better
    unless its registration says ``higher=True``."""

    name: str
    score: Callable[[Tensor, Tensor | None, Tensor], tuple[float, float, dict[str, float]]]
    needs_x_T: bool = False
    state: dict[str, Any] = field(default_factory=dict)


MetricFactory = Callable[..., Metric]  # factory(backbone, schedule, **options) -> Metric
# label: the axis label; higher: whether higher values are better (most metrics: lower is)
METRICS: Registry[MetricFactory] = Registry("metric", "metrics", meta={"label": None, "higher": False})


def bootstrap(fn: Callable[[Tensor], float], n: int, rounds: int = 10, seed: int = 0) -> float:
    """Standard error of ``fn(indices)`` over ``rounds`` resamplings of n points with replacement."""
    g = torch.Generator().manual_seed(seed)
    vals = [fn(torch.randint(0, n, (n,), generator=g)) for _ in range(rounds)]
    return float(torch.tensor(vals).std())


def fd_metric(name: str, features: Callable[[Tensor], Tensor], ref: tuple[Tensor, Tensor]) -> Metric:
    """Fréchet distance of ``features(samples)`` to reference statistics (μ, Σ), bootstrap SE."""

    def score(x: Tensor, labels: Tensor | None, x_T: Tensor) -> tuple[float, float, dict[str, float]]:
        f = features(x).to(torch.float64)
        value = frechet_distance(*gaussian_stats(f), *ref)
        return value, bootstrap(lambda i: frechet_distance(*gaussian_stats(f[i]), *ref), len(f)), {}

    return Metric(name, score)


def classifier_features(clf: Any, x: Tensor, batch_size: int = 250) -> Tensor:
    """A classifier's penultimate features of images x, in batches, without gradients."""
    with torch.no_grad():
        return torch.cat([clf.features(x[i:i + batch_size].float()) for i in range(0, len(x), batch_size)])


