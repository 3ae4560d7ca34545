"""The empirical-data backbone against brute force; the Fréchet distance against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

import diffsampler as ds
from diffsampler.metrics import frechet_distance, gaussian_stats

F64 = torch.float64


@pytest.fixture
def points() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(12, 2, 3, generator=g, dtype=F64), torch.arange(12) % 3


def test_empirical_eps_equals_brute_force(points) -> None:
    data, labels = points
    bb = ds.Empirical(data, labels)
    s = ds.SCHEDULES.get("cosine")()
    t = torch.tensor([0.9, 0.5, 0.1, 0.01], dtype=F64)
    x = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    for y in (None, torch.tensor([0, 1, 2, 0])):
        got = bb.eps(x, t, s, class_labels=y)
        for b in range(4):
            a = s.alpha_bar(t[b]).item()
            members = range(12) if y is None else [n for n in range(12) if labels[n] == y[b]]
            logw = torch.tensor(
                [-((x[b] - math.sqrt(a) * data[n]) ** 2).sum().item() / (2 * (1 - a)) for n in members], dtype=F64
            )
            w = torch.softmax(logw, 0)
            x0 = sum(wi * data[n] for wi, n in zip(w, members))
            torch.testing.assert_close(got[b], (x[b] - math.sqrt(a) * x0) / math.sqrt(1 - a))


def test_empirical_samples_land_on_the_data(points) -> None:
    data, labels = points
    bb = ds.Empirical(data, labels)
    x = ds.sample(bb, schedule="linear", sampler="pf-ode", method="heun", steps=40, shape=(64, 2, 3), seed=0, dtype=F64)
    d = torch.cdist(x.reshape(64, -1), data.reshape(12, -1))
    assert d.min(1).values.max() < 0.05, "every sample should sit on a data point"
    assert d.argmin(1).unique().numel() >= 8, "samples should spread over the data set"
    y = torch.tensor([0, 1, 2, 1] * 4)
    xc = ds.sample(
        bb, schedule="linear", sampler="ddim", steps=50, shape=(16, 2, 3), seed=0, dtype=F64, cond={"class_labels": y}
    )
    nearest = torch.cdist(xc.reshape(16, -1), data.reshape(12, -1)).argmin(1)
    assert torch.equal(labels[nearest], y)


def test_empirical_errors(points) -> None:
    data, _ = points
    with pytest.raises(ValueError, match="class_labels given, but this empirical backbone has no labels"):
        ds.Empirical(data).eps(data[:1], torch.tensor([0.5], dtype=F64), ds.SCHEDULES.get("linear")(), class_labels=0)
    with pytest.raises(ValueError, match="got 3 labels for 12 data points"):
        ds.Empirical(data, torch.arange(3))


def test_frechet_distance_closed_forms() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(5, 5, generator=g, dtype=F64)
    s1 = a @ a.T + 0.1 * torch.eye(5, dtype=F64)
    mu1, mu2 = torch.randn(5, generator=g, dtype=F64), torch.randn(5, generator=g, dtype=F64)
    # Σ₂ = c²Σ₁ commutes with Σ₁: tr (Σ₁Σ₂)^{½} = c·tr Σ₁, so d² = ‖Δμ‖² + (1 − c)²·tr Σ₁
    c = 1.7
    expected = (mu1 - mu2).pow(2).sum().item() + (1 - c) ** 2 * s1.trace().item()
    assert frechet_distance(mu1, s1, mu2, c**2 * s1) == pytest.approx(expected, rel=1e-10)
    # diagonal covariances: d² = ‖Δμ‖² + Σ (σ₁ − σ₂)²
    v1, v2 = torch.rand(5, generator=g, dtype=F64) + 0.1, torch.rand(5, generator=g, dtype=F64) + 0.1
    expected = (mu1 - mu2).pow(2).sum().item() + (v1.sqrt() - v2.sqrt()).pow(2).sum().item()
    assert frechet_distance(mu1, torch.diag(v1), mu2, torch.diag(v2)) == pytest.approx(expected, rel=1e-10)
    assert abs(frechet_distance(mu1, s1, mu1, s1)) < 1e-9
    with pytest.raises(ValueError, match="shapes do not match"):
        frechet_distance(mu1, s1, mu2[:3], s1)


def test_gaussian_stats() -> None:
    f = torch.randn(20000, 3, generator=torch.Generator().manual_seed(0), dtype=F64) * torch.tensor([1.0, 2.0, 0.5])
    mu, cov = gaussian_stats(f)
    torch.testing.assert_close(cov.diag(), torch.tensor([1.0, 4.0, 0.25], dtype=F64), rtol=0.05, atol=0.0)
    assert mu.abs().max() < 0.05
    with pytest.raises(ValueError, match="at least 2"):
        gaussian_stats(f[:1])


def _mean_metric() -> ds.metrics.Metric:
    """The mean of the first coordinate, as a metric with a statistic."""

    def statistic(x, labels, x_T):
        return lambda i: float(x[i, 0].mean())

    return ds.metrics.Metric("mean", lambda x, labels, x_T: (0.0, 0.0, {}), statistic=statistic)


def test_paired_difference_of_a_mean_is_the_closed_form() -> None:
    g = torch.Generator().manual_seed(0)
    n = 400
    shared = torch.randn(n, 1, generator=g, dtype=F64) * 3.0
    a, b = shared, shared + 0.5 + 0.2 * torch.randn(n, 1, generator=g, dtype=F64)
    diff, se = ds.metrics.paired_difference(_mean_metric(), a, b, None, a, rounds=4000)
    d = (b - a)[:, 0]
    assert diff == pytest.approx(float(d.mean()), rel=1e-12)
    # the bootstrap SE of a mean is the plug-in sd / √n; with 4000 rounds its own relative SE is ≈ 1/√8000
    closed = float(d.std(unbiased=False)) / math.sqrt(n)
    assert se == pytest.approx(closed, rel=0.08)
    unpaired = math.hypot(float(a.std()), float(b.std())) / math.sqrt(n)
    assert se < unpaired / 10  # the shared part cancels
    assert ds.metrics.paired_difference(_mean_metric(), a, a, None, a) == (0.0, 0.0)


def test_paired_difference_on_the_exact_metric_and_its_errors() -> None:
    from diffsampler.bench import gmm_ring

    ring = gmm_ring()
    metric = ds.metrics.make_metric("exact", ring, reference_draws=1000)
    x, _ = ring.sample_data(200, torch.Generator().manual_seed(1))
    y = 1.2 * x  # the ring's radius 20 % too large
    value_x, se_x, _ = metric.score(x, None, x)
    value_y, se_y, _ = metric.score(y, None, x)
    diff, se = ds.metrics.paired_difference(metric, x, y, None, x, rounds=20)
    assert diff == pytest.approx(value_y - value_x, rel=1e-12) and diff > 0
    assert 0 < se < math.hypot(se_x, se_y)
    with pytest.raises(ValueError, match="one shape"):
        ds.metrics.paired_difference(metric, x, y[:10], None, x)
    with pytest.raises(ValueError, match="no statistic"):
        ds.metrics.paired_difference(ds.metrics.Metric("bare", metric.score), x, y, None, x)
