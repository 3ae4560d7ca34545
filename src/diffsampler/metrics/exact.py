"""Exact targets: distances to draws from an analytic distribution (a Gaussian mixture)."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from .base import METRICS, Metric, bootstrap
from .frechet import frechet_distance, gaussian_stats, sliced_wasserstein_to

__all__ = ["exact_metric"]


@METRICS.register("exact", label="sliced Wasserstein distance to exact draws")
def exact(backbone: Any, schedule: Any = None, *, reference_draws: int = 20000, seed: int = 0) -> Metric:
    """Sliced Wasserstein distance to exact draws of an analytic backbone (e.g. --model gmm-ring)."""
    if not hasattr(backbone, "sample_data"):
        raise ValueError("metric 'exact' needs an analytic backbone (e.g. --model gmm-ring)")
    return exact_metric(backbone, reference_draws, seed)


def exact_metric(mixture: Any, reference_draws: int = 20000, seed: int = 0) -> Metric:
    """Analytic targets: sliced Wasserstein distance to exact draws (the value); Fréchet distance to the
    true (μ, Σ) and the mean true log-density beside it."""
    draws, _ = mixture.sample_data(reference_draws, torch.Generator().manual_seed(seed))
    mu, cov = mixture.mean(), mixture.covariance()
    to_draws = sliced_wasserstein_to(draws)

    def statistic(x: Tensor, labels: Tensor | None, x_T: Tensor) -> Callable[[Tensor], float]:
        f = x.reshape(x.shape[0], -1).to(torch.float64)
        return lambda i: to_draws(f[i])

    def score(x: Tensor, labels: Tensor | None, x_T: Tensor) -> tuple[float, float, dict[str, float]]:
        f = x.reshape(x.shape[0], -1).to(torch.float64)
        sw = statistic(x, labels, x_T)
        return (
            sw(torch.arange(len(f))),
            bootstrap(sw, len(f)),
            {
                "frechet_distance": frechet_distance(*gaussian_stats(f), mu, cov),
                "mean_log_density": float(mixture.log_prob(f).mean()),
                "true_mean_log_density": float(mixture.log_prob(draws).mean()),
            },
        )

    return Metric("exact", score, statistic=statistic)
