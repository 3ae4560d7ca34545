"""KID against torchmetrics; precision, recall, density and coverage against their published formulas written as
loops; closed forms; the registered metrics on real digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.image.kid import poly_mmd

import diffsampler as ds
from diffsampler.data import load_digits
from diffsampler.metrics import METRICS, make_metric
from diffsampler.metrics.sets import kid, mmd2_unbiased, prdc

F64 = torch.float64


def _sets(m: int, n: int, d: int, shift: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, d, generator=g, dtype=F64), torch.randn(n, d, generator=g, dtype=F64) + shift


@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_mmd_is_torchmetrics_poly_mmd(shift: float) -> None:
    x, y = _sets(60, 60, 16, shift)
    assert mmd2_unbiased(x, y) == pytest.approx(poly_mmd(y, x).item(), rel=1e-10, abs=1e-14)
    assert kid(x, y, subset_size=1000) == pytest.approx(poly_mmd(y, x).item(), rel=1e-10, abs=1e-14)


def test_kid_is_unbiased_near_zero_and_grows_with_the_shift() -> None:
    same = [kid(*_sets(200, 200, 8, 0.0, seed), subsets=20, subset_size=100, seed=seed) for seed in range(10)]
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(len(same)) + 1e-4
    assert kid(*_sets(200, 200, 8, 0.3), subsets=20, subset_size=100) < kid(
        *_sets(200, 200, 8, 1.0), subsets=20, subset_size=100
    )


def _prdc_loops(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """Naeem et al. 2020's definitions, one point at a time."""

    def radius(points: np.ndarray, i: int) -> float:
        return np.sort(np.linalg.norm(points - points[i], axis=1))[k]  # [0] is the point itself

    rr = [radius(real, j) for j in range(len(real))]
    rf = [radius(fake, i) for i in range(len(fake))]
    dist = lambda a, b: float(np.linalg.norm(a - b))  # noqa: E731
    precision = np.mean([any(dist(f, r) < rr[j] for j, r in enumerate(real)) for f in fake])
    recall = np.mean([any(dist(r, f) < rf[i] for i, f in enumerate(fake)) for r in real])
    density = np.mean([sum(dist(f, r) < rr[j] for j, r in enumerate(real)) for f in fake]) / k
    coverage = np.mean([min(dist(r, f) for f in fake) < rr[j] for j, r in enumerate(real)])
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("shift", [0.0, 0.7])
def test_prdc_matches_the_definitions(k: int, shift: float) -> None:
    real, fake = _sets(40, 55, 5, shift, seed=k)
    ours = prdc(fake, real, k)
    ref = _prdc_loops(real.numpy(), fake.numpy(), k)
    assert ours == pytest.approx(ref, rel=1e-12)
    assert 0 < ours["precision"] < 1 or shift == 0.0


def test_prdc_closed_forms() -> None:
    real, _ = _sets(50, 50, 4, 0.0)
    same = prdc(real, real, 3)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    far = prdc(real + 100.0, real, 3)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_digit_metrics_on_real_digits() -> None:
    bb = ds.bundled.load_model("digits")
    x, y = load_digits("test")
    train_x, _ = load_digits("train")
    acc = make_metric("accuracy-digits", bb).score(x, y, x)
    from diffsampler.bundled import load_classifier
    from diffsampler.training import classifier_accuracy

    held_out = classifier_accuracy(load_classifier("clean"))  # a float32 mean
    assert acc[0] == pytest.approx(held_out, abs=1e-6) and 0 < acc[1] < 0.02
    kid_real = make_metric("kid-digits", bb).score(train_x[:500], None, x)
    kid_noise = make_metric("kid-digits", bb).score(torch.rand(500, 1, 28, 28) * 2 - 1, None, x)
    # the classifier was trained on the training digits, so their features differ from held-out ones (as fd-digits'
    # floor of 0.38 says): far less than noise's, though
    assert 0 < kid_real[1] < kid_real[0] < kid_noise[0] / 3
    p = make_metric("precision-digits", bb).score(train_x[:500], None, x)
    assert 0.6 < p[0] <= 1.0 and set(p[2]) == {"precision", "recall", "density", "coverage"}
    assert METRICS.meta("precision-digits")["higher"] and not METRICS.meta("kid-digits")["higher"]
    with pytest.raises(ValueError, match="needs conditional samples"):
        make_metric("accuracy-digits", bb).score(x, None, x)


@pytest.mark.slow  # Inception at 299×299 on 3 × 64 digits: a minute or two on 2 CPU cores
def test_sfid_reads_the_first_branch_of_mixed_6_and_the_network_s_own_path(tmp_path) -> None:
    """mixed_6 concatenates [conv, tower, tower_1, tower_2]: its first 7 channels are sFID's; and the stages up to
    pool3 in order are the network itself (its pool3 output is FID's)."""
    import warnings

    from diffsampler.metrics.fid import fid_features, inception, inception_weights, spatial_inception

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        net = torch.jit.load(str(inception_weights()), map_location="cpu").eval()
    layers = net.net.layers
    names = [n for n, _ in layers.named_children()]
    x = load_digits("test")[0][:3]

    def through(upto: str):
        def run(u):
            for n in names[: names.index(upto) + 1]:
                u = getattr(layers, n)(u)
            return u

        return run

    block = fid_features(lambda u: through("mixed_6")(u)[:, :7].permute(0, 2, 3, 1), x)
    torch.testing.assert_close(spatial_inception()(x), block, rtol=0, atol=0)
    torch.testing.assert_close(fid_features(lambda u: through("pool2")(u), x), inception()(x), rtol=1e-6, atol=1e-6)
    from PIL import Image

    for i, digit in enumerate(load_digits("test")[0][:64]):  # a reference folder, as --fid-ref reads one
        Image.fromarray(((digit[0] + 1) * 127.5).round().clamp(0, 255).byte().numpy()).save(tmp_path / f"{i}.png")
    metric = make_metric("sfid", ds.bundled.load_model("digits"), ref=str(tmp_path))
    real = metric.score(load_digits("train")[0][:64], None, x)
    noise = metric.score(torch.rand(64, 1, 28, 28) * 2 - 1, None, x)
    assert 0 < real[0] < noise[0] / 3 and real[1] > 0
