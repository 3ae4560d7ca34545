"""CONTRIBUTING.md's examples run as written, register as they say, and do what they claim."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import diffsampler as ds
from diffsampler.bench import bench, gmm_ring
from diffsampler.guidance import CFG
from diffsampler.metrics import make_metric
from diffsampler.model_fn import ModelFn

TEXT = (Path(__file__).parents[1] / "CONTRIBUTING.md").read_text()
EXAMPLES = re.findall(r"```python\n(.*?)```", TEXT, flags=re.S)
F64 = torch.float64


@pytest.fixture
def registered(own_registries):
    """Run every example, each in a module of its own; the registries are restored afterwards."""
    for i, code in enumerate(EXAMPLES):
        assert len(code.strip().splitlines()) <= 30, f"example {i} is longer than an example should be"
        exec(compile(code, f"CONTRIBUTING.md example {i}", "exec"), {"__name__": f"contributing_{i}"})


def test_one_example_per_kind() -> None:
    assert len(EXAMPLES) == 5


def test_the_sampler_is_ddim(registered, mixture) -> None:
    assert ds.SAMPLERS.meta("ddim-x0") == {
        "spacing": "trailing",
        "discrete": False,
        "renoise": False,
        "adaptive": False,
    }
    x_T = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    ours = ds.sample(mixture, schedule="linear", sampler="ddim-x0", steps=10, x_T=x_T, full_output=True)
    ref = ds.sample(mixture, schedule="linear", sampler="ddim", steps=10, x_T=x_T)
    assert ours.nfe == 10
    torch.testing.assert_close(ours.samples, ref, rtol=1e-12, atol=1e-12)


def test_the_spacing_makes_a_valid_grid(registered) -> None:
    grid = ds.make_grid(ds.SCHEDULES.get("linear")(), 4, "quadratic-t")
    assert grid.tolist() == [1.0, 0.5625, 0.25, 0.0625, 0.0]


def test_the_metric_plugs_into_bench(registered, tmp_path) -> None:
    gm = gmm_ring()
    rows = bench(
        gm,
        samplers=["ddim"],
        steps=[20],
        metric=make_metric("mean-error", gm),
        out=tmp_path,
        num_samples=400,
        batch_size=200,
        schedule=ds.SCHEDULES.get("linear")(),
        plots=False,
    )
    # the ring's mean is 0 and its per-coordinate std ≈ 2.8: 400 samples put the mean within ~0.2
    assert rows[0]["metric"] == "mean-error" and 0 < rows[0]["value"] < 0.5 and rows[0]["stderr"] > 0


def test_the_guidance_is_cfg_with_a_growing_scale(registered, mixture) -> None:
    guide = ds.GUIDANCE.get("cfg-linear")(scale=3.0)
    s = ds.SCHEDULES.get("linear")()
    model_fn = ModelFn(mixture, s, batch=6, guidance=guide, cond={"class_labels": torch.arange(6) % 3})
    assert model_fn.zero_snr and not model_fn.renoise  # what it declares is what sample reads
    eps = guide(lambda x, t, **c: mixture.eps(x, t, s, **c), s, mixture)
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    labels = torch.arange(6) % 3
    for t in (0.9, 0.2):
        tt = torch.full((6,), t, dtype=F64)
        w = 1 + 2 * (1 - t)
        want = CFG(scale=w)(lambda x, t, **c: mixture.eps(x, t, s, **c), s, mixture)(x, tt, class_labels=labels)
        torch.testing.assert_close(eps(x, tt, class_labels=labels), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("schedule", ["linear", "ve", "cosine"])
def test_the_backbone_is_a_one_component_mixture(registered, schedule) -> None:
    gauss = ds.BACKBONES.get("gaussian")(mean=[1.0, -2.0], std=0.5)
    exact = ds.GaussianMixture(means=[[1.0, -2.0]], weights=[1.0], variances=[[0.25, 0.25]])
    assert ds.BACKBONES.describe("gaussian").startswith("Exact ε of N(mean")
    x_T = torch.randn(8, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    run = dict(schedule=schedule, sampler="dpm-solver++", steps=8, x_T=x_T)
    torch.testing.assert_close(ds.sample(gauss, **run), ds.sample(exact, **run), rtol=1e-12, atol=1e-12)
