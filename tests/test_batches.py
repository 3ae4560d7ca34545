"""Batches: per-sample conditioning follows the rows a sampler evaluates; what batch size may change, and what not."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import diffsampler as ds
from diffsampler.cli import app
from diffsampler.guidance import CFG, ClassifierGuidance

from .test_cli import tiny  # noqa: F401  (the tiny class-conditional pipeline)

F64 = torch.float64
N = 48


def _linear_classifier(k: int, dim: int = 2):
    w = torch.randn(dim, k, generator=torch.Generator().manual_seed(3), dtype=F64)
    return lambda x, t: x.to(F64) @ w


@pytest.mark.parametrize("guidance", ["cfg", "classifier"])
def test_adaptive_solver_with_per_sample_labels(mixture, guidance: str) -> None:
    """rk45 evaluates only the samples still running: their labels must follow (it crashed when some had finished)."""
    labels = torch.arange(N) % mixture.num_components
    guide = (
        CFG(scale=2.0) if guidance == "cfg" else ClassifierGuidance(_linear_classifier(3), scale=1.0, pass_labels=True)
    )
    x_T = torch.randn(N, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    r = ds.sample(
        mixture,
        schedule="linear",
        sampler="pf-ode",
        method="rk45",
        rtol=1e-3,
        atol=1e-3,
        x_T=x_T,
        guidance=guide,
        cond={"class_labels": labels},
        full_output=True,
    )
    per_call = 2 if guidance == "cfg" else 1
    assert r.nfe < per_call * r.calls, "some samples finished before others: the case under test"
    for i in (0, 7, N - 1):  # sample i alone, with its own label, is the same sample
        alone = ds.sample(
            mixture,
            schedule="linear",
            sampler="pf-ode",
            method="rk45",
            rtol=1e-3,
            atol=1e-3,
            x_T=x_T[i : i + 1],
            guidance=guide,
            cond={"class_labels": labels[i : i + 1]},
        )
        torch.testing.assert_close(alone[0], r.samples[i], rtol=1e-12, atol=1e-12)


def test_take_rows_slices_only_batched_conditioning() -> None:
    cond = {"class_labels": torch.arange(4), "one": torch.tensor([9]), "scalar": 3, "ctx": torch.zeros(4, 2, 5)}
    out = ds.sampling.take_rows(cond, torch.tensor([1, 3]), batch=4)
    assert out["class_labels"].tolist() == [1, 3] and out["ctx"].shape == (2, 2, 5)
    assert out["one"].tolist() == [9] and out["scalar"] == 3


@pytest.mark.parametrize(
    "args",
    [
        ["--sampler", "ddpm"],
        ["--sampler", "dpm-solver++"],
        ["--sampler", "ddim", "--guidance", "cfg", "--scale", "2"],
        ["--sampler", "pf-ode", "--opt", "method=rk45", "--opt", "rtol=1e-2", "--opt", "atol=1e-2"],
    ],
)
def test_deterministic_samples_do_not_depend_on_batch_size(tiny, tmp_path, args) -> None:  # noqa: F811
    runner = CliRunner()

    def run(batch_size: int) -> torch.Tensor:
        out = tmp_path / f"b{batch_size}.safetensors"
        r = runner.invoke(
            app,
            [
                "sample",
                "--model",
                str(tiny / "tiny"),
                "--steps",
                "4",
                "--n",
                "7",
                "--class",
                "0,1,2",
                "--batch-size",
                str(batch_size),
                "--deterministic",
                "--quiet",
                "--out",
                str(out),
                *args,
            ],
        )
        assert r.exit_code == 0, r.output
        return load_file(str(out))["samples"]

    one = run(1)
    for batch_size in (3, 7):
        assert torch.equal(run(batch_size), one), f"--batch-size {batch_size} changed the samples"


def test_deterministic_is_the_same_computation(mixture) -> None:
    """Per-sample evaluation changes only the grouping of rows, not the numbers (an exact, row-wise model here)."""
    kw = dict(
        schedule="linear",
        sampler="dpm-solver++",
        steps=8,
        shape=(9, 2),
        seed=4,
        dtype=F64,
        guidance=CFG(scale=1.5),
        cond={"class_labels": torch.arange(9) % 3},
    )
    assert torch.equal(ds.sample(mixture, deterministic=True, **kw), ds.sample(mixture, **kw))
