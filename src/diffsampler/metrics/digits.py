"""fd-digits: the Fréchet distance of the bundled clean digit classifier's features to the 500 held-out digits."""

from __future__ import annotations

from typing import Any

from .base import METRICS, Metric, classifier_features, fd_metric

__all__ = ["fd_digits"]


@METRICS.register("fd-digits", label="fd-digits (Fréchet distance)")
def fd_digits(backbone: Any, schedule: Any = None) -> Metric:
    """Fréchet distance in the bundled digit classifier's features to the held-out digits."""
    if backbone.sample_shape != (1, 28, 28):
        raise ValueError("metric 'fd-digits' needs 28×28 one-channel samples (e.g. --model digits)")
    from ..bundled import fd_reference, load_classifier

    clf = load_classifier("clean")
    return fd_metric("fd-digits", lambda x: classifier_features(clf, x), fd_reference())
