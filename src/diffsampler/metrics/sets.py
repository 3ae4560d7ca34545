r"""Metrics of two feature sets: KID, and precision, recall, density and coverage; with class accuracy.

- KID (Bińkowski et al. 2018): the unbiased MMD² with the kernel k(a, b) = (a·b/d + 1)³, averaged
  over random subsets of ``subset_size`` (all of them when the sets are smaller).
- Precision and recall (Kynkäänniemi et al. 2019) and density and coverage (Naeem et al. 2020),
  with r_k(a) the distance from a to its k-th nearest neighbour in its own set (k = 3):
  precision = P_fake(∃ real r: ‖f − r‖ < r_k(r)), recall = P_real(∃ fake f: ‖r − f‖ < r_k(f)),
  density = E_fake[#{real r: ‖f − r‖ < r_k(r)}]/k, coverage = P_real(min_f ‖r − f‖ < r_k(r)).

Each is registered on the bundled digit classifier's features (``kid-digits``, ``precision-digits``, …,
``accuracy-digits``: the share of conditional samples the clean classifier gives their requested
class) and on Inception features (``kid``, ``precision``, …: the FID network). Precision, recall,
density, coverage and accuracy are higher-is-better (``METRICS.meta(name)["higher"]``).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from .base import METRICS, Metric, bootstrap, classifier_features

__all__ = ["kid", "mmd2_unbiased", "prdc", "kth_neighbour_radii"]


def mmd2_unbiased(x: Tensor, y: Tensor) -> float:
    """Unbiased MMD² of x [m, d] and y [n, d] with the cubic kernel (x·y/d + 1)³."""
    d = x.shape[1]
    kxx, kyy, kxy = (((a @ b.T) / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    m, n = len(x), len(y)
    return float(
        (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
        + (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
        - 2 * kxy.mean()
    )


def kid(fake: Tensor, real: Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> float:
    """KID: the mean unbiased MMD² over ``subsets`` random subsets of ``subset_size`` from each set."""
    size = min(subset_size, len(fake), len(real))
    if size == len(fake) == len(real):  # every subset is the whole set, and MMD² ignores order
        return mmd2_unbiased(fake.double(), real.double())
    g = torch.Generator().manual_seed(seed)
    vals = [
        mmd2_unbiased(
            fake[torch.randperm(len(fake), generator=g)[:size]].double(),
            real[torch.randperm(len(real), generator=g)[:size]].double(),
        )
        for _ in range(subsets)
    ]
    return float(torch.tensor(vals).mean())


def kth_neighbour_radii(f: Tensor, k: int) -> Tensor:
    """Distance from each point of f to its k-th nearest neighbour in f (itself excluded)."""
    return torch.cdist(f, f).kthvalue(k + 1, dim=1).values


def prdc(fake: Tensor, real: Tensor, k: int = 3) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` against ``real`` with k-nearest-neighbour balls."""
    fake, real = fake.double(), real.double()
    r_real, r_fake = kth_neighbour_radii(real, k), kth_neighbour_radii(fake, k)
    d = torch.cdist(real, fake)  # [real, fake]
    inside_real = d < r_real[:, None]
    return {
        "precision": inside_real.any(0).double().mean().item(),
        "recall": (d < r_fake[None, :]).any(1).double().mean().item(),
        "density": inside_real.double().sum(0).mean().item() / k,
        "coverage": (d.min(1).values < r_real).double().mean().item(),
    }


def _set_metric(name: str, what: str, features: Callable[[Tensor], Tensor], real: Tensor, k: int = 3) -> Metric:
    """A metric of the generated features against ``real`` features, with a bootstrap SE over the samples."""

    def value(f: Tensor) -> float:
        return kid(f, real) if what == "kid" else prdc(f, real, k)[what]

    def statistic(x: Tensor, labels: Tensor | None, x_T: Tensor) -> Callable[[Tensor], float]:
        f = features(x).double()
        return lambda i: value(f[i])

    def score(x: Tensor, labels: Tensor | None, x_T: Tensor) -> tuple[float, float, dict[str, float]]:
        f = features(x).double()
        extra = {} if what == "kid" else {key: round(v, 4) for key, v in prdc(f, real, k).items()}
        return value(f), bootstrap(lambda i: value(f[i]), len(f)), extra

    return Metric(name, score, statistic=statistic)


def _digit_features() -> tuple[Callable[[Tensor], Tensor], Tensor, Any]:
    from ..bundled import load_classifier
    from ..data import load_digits

    clf = load_classifier("clean")
    features = lambda x: classifier_features(clf, x)  # noqa: E731
    return features, features(load_digits("test")[0]).double(), clf


def _check_digits(name: str, backbone: Any) -> None:
    if backbone.sample_shape != (1, 28, 28):
        raise ValueError(f"metric {name!r} needs 28×28 one-channel samples (e.g. --model digits)")


def _digits(what: str) -> Callable[..., Metric]:
    def factory(backbone: Any, schedule: Any = None, *, k: int = 3) -> Metric:
        name = f"{what}-digits"
        _check_digits(name, backbone)
        features, real, _ = _digit_features()
        return _set_metric(name, what, features, real, k)

    factory.__doc__ = f"{what} of the bundled digit classifier's features against the 500 held-out digits."
    return factory


def _inception(what: str) -> Callable[..., Metric]:
    def factory(
        backbone: Any, schedule: Any = None, *, weights: str | None = None, ref: str | None = None, k: int = 3
    ) -> Metric:
        from .fid import inception, reference_features

        features = inception(weights, 2048)
        return _set_metric(what, what, features, reference_features(what, ref, backbone, features), k)

    factory.__doc__ = f"{what} of Inception features against ``ref`` (a folder of images; digits: held-out digits)."
    return factory


for _what, _label in (
    ("kid", "KID"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("density", "density"),
    ("coverage", "coverage"),
):
    METRICS.register(
        f"{_what}-digits", _digits(_what), label=f"{_label} (digit classifier features)", higher=_what != "kid"
    )
    METRICS.register(_what, _inception(_what), label=f"{_label} (Inception features)", higher=_what != "kid")


@METRICS.register("accuracy-digits", label="class accuracy (bundled digit classifier)", higher=True)
def accuracy_digits(backbone: Any, schedule: Any = None) -> Metric:
    """The share of conditional samples the bundled clean classifier gives their requested class."""
    _check_digits("accuracy-digits", backbone)
    _, _, clf = _digit_features()

    def statistic(x: Tensor, labels: Tensor | None, x_T: Tensor) -> Callable[[Tensor], float]:
        if labels is None:
            raise ValueError("metric 'accuracy-digits' needs conditional samples (class labels)")
        with torch.no_grad():
            hit = torch.cat([clf(x[i : i + 250].float()).argmax(1) for i in range(0, len(x), 250)]) == labels
        hit = hit.double()
        return lambda i: hit[i].mean().item()

    def score(x: Tensor, labels: Tensor | None, x_T: Tensor) -> tuple[float, float, dict[str, float]]:
        acc = statistic(x, labels, x_T)
        return acc(torch.arange(len(x))), bootstrap(acc, len(x)), {}

    return Metric("accuracy-digits", score, statistic=statistic)
