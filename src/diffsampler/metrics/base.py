"""What a metric is: a named score of samples, lower is better, with a bootstrap standard error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from ..registry import Registry
from .frechet import frechet_distance, gaussian_stats

__all__ = ["METRICS", "Metric", "MetricFactory", "bootstrap", "paired_difference", "fd_metric", "classifier_features"]

Statistic = Callable[[Tensor, "Tensor | None", Tensor], Callable[[Tensor], float]]


@dataclass
class Metric:
    """A named quality measure: ``score(samples, labels, x_T) -> (value, stderr, extra)``; lower is better
    unless its registration says ``higher=True``. ``statistic(samples, labels, x_T)``, where given, returns
    the value on a subset of the samples picked by an index tensor (for paired comparisons)."""

    name: str
    score: Callable[[Tensor, Tensor | None, Tensor], tuple[float, float, dict[str, float]]]
    needs_x_T: bool = False
    state: dict[str, Any] = field(default_factory=dict)
    statistic: Statistic | None = None


MetricFactory = Callable[..., Metric]  # factory(backbone, schedule, **options) -> Metric
# label: the axis label; higher: whether higher values are better (most metrics: lower is)
METRICS: Registry[MetricFactory] = Registry("metric", "metrics", meta={"label": None, "higher": False})


def bootstrap(fn: Callable[[Tensor], float], n: int, rounds: int = 10, seed: int = 0) -> float:
    """Standard error of ``fn(indices)`` over ``rounds`` resamplings of n points with replacement."""
    g = torch.Generator().manual_seed(seed)
    vals = [fn(torch.randint(0, n, (n,), generator=g)) for _ in range(rounds)]
    return float(torch.tensor(vals).std())


def paired_difference(
    metric: Metric, a: Tensor, b: Tensor, labels: Tensor | None, x_T: Tensor, rounds: int = 200, seed: int = 0
) -> tuple[float, float]:
    """value(b) − value(a) and its paired bootstrap SE: both sets resampled with the same indices.

    For two samplers run from the same x_T (and noise seeds) sample i of a and of b are paired, so the
    difference varies less than the two SEs' root sum of squares says."""
    if metric.statistic is None:
        raise ValueError(f"metric {metric.name!r} has no statistic for a paired comparison")
    if a.shape != b.shape:
        raise ValueError(f"paired sample sets must have one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    fa, fb = metric.statistic(a, labels, x_T), metric.statistic(b, labels, x_T)
    every = torch.arange(len(a))
    return fb(every) - fa(every), bootstrap(lambda i: fb(i) - fa(i), len(a), rounds, seed)


def fd_metric(name: str, features: Callable[[Tensor], Tensor], ref: tuple[Tensor, Tensor]) -> Metric:
    """Fréchet distance of ``features(samples)`` to reference statistics (μ, Σ), bootstrap SE."""

    def statistic(x: Tensor, labels: Tensor | None, x_T: Tensor) -> Callable[[Tensor], float]:
        f = features(x).to(torch.float64)
        return lambda i: frechet_distance(*gaussian_stats(f[i]), *ref)

    def score(x: Tensor, labels: Tensor | None, x_T: Tensor) -> tuple[float, float, dict[str, float]]:
        fd = statistic(x, labels, x_T)
        return fd(torch.arange(len(x))), bootstrap(fd, len(x)), {}

    return Metric(name, score, statistic=statistic)


def classifier_features(clf: Any, x: Tensor, batch_size: int = 250) -> Tensor:
    """A classifier's penultimate features of images x, in batches, without gradients."""
    with torch.no_grad():
        return torch.cat([clf.features(x[i : i + batch_size].float()) for i in range(0, len(x), batch_size)])
