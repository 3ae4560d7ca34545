"""Sample-quality metrics, in the ``METRICS`` registry (entry-point group ``diffsampler.metrics``).

A metric factory is called as ``factory(backbone, schedule, **options)`` and returns a ``Metric``,
whose ``score(samples, labels, x_T)`` gives (value, bootstrap standard error, extra figures);
lower is better. Register one with ``@METRICS.register("name", label="axis label")``.
"""

from __future__ import annotations

from ..registry import import_submodules
from .base import METRICS, Metric, MetricFactory, bootstrap, classifier_features, fd_metric, paired_difference
from .exact import exact_metric
from .fid import fid_features, inception, inception_weights, reference_stats, resize_tf1
from .frechet import frechet_distance, gaussian_stats, sliced_wasserstein
from .ode_error import ode_error_metric

import_submodules(__name__, __path__)  # each file registers its metrics where they are defined

__all__ = [
    "METRICS",
    "Metric",
    "MetricFactory",
    "bootstrap",
    "paired_difference",
    "fd_metric",
    "classifier_features",
    "frechet_distance",
    "gaussian_stats",
    "sliced_wasserstein",
    "exact_metric",
    "ode_error_metric",
    "inception",
    "inception_weights",
    "fid_features",
    "reference_stats",
    "resize_tf1",
    "make_metric",
]


def make_metric(name: str, backbone: object, schedule: object = None, **options: object) -> Metric:
    """The metric ``name`` for this backbone (its reference built), with the factory's options."""
    from ..options import check_options

    factory = METRICS.get(name)
    check_options("metric", name, factory, options)
    return factory(backbone, schedule, **options)
