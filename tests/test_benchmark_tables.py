"""The leaderboard's paired comparison: cells drawn again equal the bench's, and the result is kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diffsampler.bench import bench, load_bench_model
from diffsampler.metrics import make_metric, paired_difference

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_paired_redraws_the_bench_cells_and_keeps_the_result(tmp_path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import leaderboard

    backbone, schedule = load_bench_model("gmm-ring")
    metric = make_metric("exact", backbone, schedule, reference_draws=1000)
    rows = bench(
        backbone,
        samplers=["unipc:variant=bh1", "ddim"],
        nfe=[4],
        metric=metric,
        out=tmp_path / "cells",
        num_samples=64,
        batch_size=32,
        seed=3,
        schedule=schedule,
        model_name="ring",
        plots=False,
    )
    a, b = sorted(rows, key=lambda r: r["sampler"], reverse=True)  # unipc, ddim
    assert json.loads(a["options"]) == {"spacing": "trailing", "variant": "bh1"}
    x, labels, x_T = leaderboard.redraw("ring", a, backbone, schedule, metric)
    assert x.shape == (64, 2) and labels is None and metric.score(x, None, x_T)[0] == a["value"]
    diff, se = leaderboard.paired(tmp_path, "ring", a, b, backbone, schedule, metric)
    assert diff == pytest.approx(b["value"] - a["value"], abs=1e-12) and se > 0
    xb, _, _ = leaderboard.redraw("ring", b, backbone, schedule, metric)
    assert (diff, se) == paired_difference(metric, x, xb, None, x_T)
    monkeypatch.setattr(leaderboard, "redraw", lambda *args: pytest.fail("drawn again, not read from paired.json"))
    assert leaderboard.paired(tmp_path, "ring", a, b, backbone, schedule, metric) == (diff, se)
    assert len(json.loads((tmp_path / "paired.json").read_text())) == 1
