"""tune_grid: the dynamic programme against brute force, the jump costs against the DDIM sampler, the grid
file and its checks, and the command line (tune-grid, sample --grid, bench --grid)."""

from __future__ import annotations

import itertools
import json
import re

import pytest
import torch
from typer.testing import CliRunner

import diffsampler as ds
from diffsampler.cli import app
from diffsampler.sampling import time_grid
from diffsampler.tuning import _Reuse, cheapest_path, jump_costs, load_grid, tune_grid

from .test_cli import tiny  # noqa: F401  (the tiny class-conditional pipeline)

runner = CliRunner()
F64 = torch.float64


def invoke(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("steps", [1, 2, 3, 5])
def test_cheapest_path_is_the_brute_force_minimum(seed: int, steps: int) -> None:
    m = 8
    cost = torch.rand(m + 1, m + 1, generator=torch.Generator().manual_seed(seed), dtype=F64)
    cost = torch.where(torch.ones_like(cost).triu(1).bool(), cost, torch.full_like(cost, float("inf")))
    total = lambda p: sum(cost[a, b].item() for a, b in zip(p, p[1:]))  # noqa: E731
    best = min(([0, *mid, m] for mid in itertools.combinations(range(1, m), steps - 1)), key=total)
    path = cheapest_path(cost, steps)
    assert path[0] == 0 and path[-1] == m and len(path) == steps + 1
    assert total(path) == pytest.approx(total(best), rel=1e-12)


def test_jump_costs_are_ddim_steps_from_the_reference(mixture) -> None:
    s = ds.SCHEDULES.get("linear")()
    fine = ds.make_grid(s, 12, "logsnr")
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    ref = ds.sample(mixture, schedule=s, sampler="dpm-solver++", order=3, grid=fine, x_T=x_T, return_trajectory=True)
    cost = jump_costs(ref.trajectory, ref.denoised, fine, s)
    for i, j in ((0, 12), (3, 7), (5, 6), (10, 12)):
        jumped = ds.sample(
            mixture,
            schedule=s,
            sampler="ddim",
            grid=fine[[i, j]] if j < 12 else torch.cat([fine[i : i + 1], torch.zeros(1, dtype=F64)]),
            x_T=ref.trajectory[i],
        )
        expected = (jumped - ref.trajectory[j]).pow(2).mean().item()
        # the costs come from expanded inner products: their rounding is that of the terms' sum, |x̂_0| + |ε̂| + |x_j|
        x0, x_i, x_j = ref.denoised[i], ref.trajectory[i], ref.trajectory[j]
        eps = (x_i - s.alpha(fine[i]) * x0) / s.std(fine[i])
        scale = (x0.norm() + eps.norm() + x_j.norm()).square().item() / x0.numel()
        assert cost[i, j].item() == pytest.approx(expected, rel=1e-12, abs=64 * torch.finfo(F64).eps * scale)
    assert torch.isinf(cost[7, 3]) and torch.isinf(cost[4, 4])


def test_tuned_grid_beats_the_default_spacing_and_is_cut_from_the_fine_grid(mixture) -> None:
    s = ds.SCHEDULES.get("linear")()
    tuned = tune_grid(mixture, sampler="ddim", nfe=4, schedule=s, batch=256, fine_steps=60, model_name="gmm")
    fine = ds.make_grid(s, 60, "logsnr").tolist()
    assert tuned.steps == 4 and tuned.grid[0] == fine[0] and tuned.grid[-1] == 0.0
    assert set(tuned.grid) <= set(fine)
    assert tuned.distance < 0.95 * tuned.default_distance
    heun = tune_grid(mixture, sampler="heun", nfe=9, schedule=s, batch=32, fine_steps=30, refine=0)
    assert heun.steps == 5 and heun.nfe == 9  # heun's 2N − 1 evaluations
    refined = tune_grid(mixture, sampler="heun", nfe=9, schedule=s, batch=32, fine_steps=30, refine=2, refine_batch=32)
    assert refined.extra["found_distance"] < heun.extra["found_distance"] and refined.extra["refine"] == 2
    assert tuned.extra["refine"] == 0  # ddim's step is the step the costs measure
    assert not tuned.extra["kept_default"]


def test_a_tuned_grid_further_than_the_default_spacing_gives_way_to_it(mixture, monkeypatch) -> None:
    s = ds.SCHEDULES.get("linear")()
    crowded = lambda cost, steps: [*range(steps), cost.shape[0] - 1]  # noqa: E731  (every step but the last at t≈1)
    monkeypatch.setattr("diffsampler.tuning.cheapest_path", crowded)
    tuned = tune_grid(mixture, sampler="ddim", nfe=4, schedule=s, batch=64, fine_steps=60)
    default = time_grid("ddim", s, 4, None)
    assert tuned.extra["kept_default"] and tuned.grid == default.tolist()
    assert tuned.distance == tuned.default_distance < tuned.extra["found_distance"]
    x = ds.sample(mixture, schedule=s, sampler="ddim", grid=tuned, x_T=torch.randn(8, 2, dtype=F64))
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("sampler, nfe", [("dpm-solver++", 6), ("heun", 9), ("unipc", 6), ("dpm-solver++-sde", 6)])
def test_refinement_reuses_the_shared_trajectory_and_changes_nothing(
    mixture, monkeypatch, sampler: str, nfe: int
) -> None:
    s = ds.SCHEDULES.get("linear")()
    kw = dict(sampler=sampler, nfe=nfe, schedule=s, batch=32, fine_steps=30, refine=2, refine_batch=32)
    tuned = tune_grid(mixture, **kw)
    monkeypatch.setattr(_Reuse, "keep", lambda self, run: setattr(self, "seen", []))  # nothing kept to look up
    plain = tune_grid(mixture, **kw)
    assert tuned.grid == plain.grid and tuned.distance == plain.distance
    assert tuned.extra["refine_calls"] == plain.extra["refine_calls"] and plain.extra["refine_calls_reused"] == 0
    if sampler == "dpm-solver++":  # one call a step: the candidate moving time k reuses the k calls before it
        n = tuned.steps
        sweeps = tuned.extra["refine_calls"] / (n * (2 * n - 1))  # the current grid and 2(n − 1) candidates
        assert sweeps in (1, 2)
        assert tuned.extra["refine_calls_reused"] == sweeps * n * (n - 1) + (sweeps - 1) * n
    else:
        assert tuned.extra["refine_calls_reused"] > 0.3 * tuned.extra["refine_calls"]


def test_reuse_answers_only_bitwise_equal_inputs(mixture) -> None:
    s = ds.SCHEDULES.get("linear")()
    reuse = _Reuse(mixture)
    x, t = torch.randn(4, 2, dtype=F64), torch.full((4,), 0.5, dtype=F64)
    first = reuse.eps(x, t, s)
    reuse.keep(True)
    assert torch.equal(reuse.eps(x.clone(), t.clone(), s), first) and reuse.reused == 1
    nudged = x.clone()
    nudged[0, 0] = torch.nextafter(nudged[0, 0], torch.tensor(float("inf"), dtype=F64))
    reuse.eps(nudged, t, s)
    reuse.eps(x, t.nextafter(torch.zeros_like(t)), s)
    reuse.eps(x.float(), t, s)
    reuse.eps(x, t, ds.SCHEDULES.get("cosine")())
    assert reuse.reused == 1 and reuse.calls == 6
    reuse.keep(False)  # a dropped run leaves the kept one
    reuse.eps(x, t, s)
    assert reuse.reused == 2


def test_grid_files_round_trip_and_refuse_another_model_schedule_or_sampler(mixture, tmp_path) -> None:
    s = ds.SCHEDULES.get("linear")()
    tuned = tune_grid(mixture, sampler="dpm-solver++", nfe=5, schedule=s, batch=16, fine_steps=20, model_name="gmm")
    tuned.save(tmp_path / "g.json")
    back = load_grid(tmp_path / "g.json")
    assert back == tuned and torch.equal(back.times, torch.tensor(tuned.grid, dtype=F64))
    back.check(s, "gmm", "dpm-solver++")
    for args, message in (
        ((ds.SCHEDULES.get("cosine")(), None, None), "another schedule"),
        ((s, "digits", None), "model 'gmm', not 'digits'"),
        ((s, None, "ddim"), "sampler 'dpm-solver++', not 'ddim'"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            back.check(*args)
        with pytest.warns(UserWarning, match=re.escape(message)):
            back.check(*args, force=True)
    x = ds.sample(mixture, schedule=s, sampler="dpm-solver++", grid=back, shape=(4, 2), seed=0, full_output=True)
    assert x.nfe == 5 and torch.equal(x.grid, back.times)
    with pytest.raises(ValueError, match=re.escape("tuned for sampler 'dpm-solver++', not 'ddim'")):
        ds.sample(mixture, schedule=s, sampler="ddim", grid=back, shape=(4, 2), seed=0)
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "other.json").write_text(json.dumps({"grid": [1, 0]}))
    data = json.loads((tmp_path / "g.json").read_text())
    (tmp_path / "up.json").write_text(json.dumps({**data, "grid": [0.5, 0.7, 0.0]}))
    for name, message in (
        ("missing.json", "no such file"),
        ("bad.json", "is not JSON"),
        ("other.json", "is not a diffsampler-grid/1 file"),
        ("up.json", "grid times must be strictly decreasing"),
    ):
        with pytest.raises(ValueError, match=message):
            load_grid(tmp_path / name)


def test_tune_grid_cli_writes_a_grid_that_sample_and_bench_use(tiny, tmp_path, monkeypatch) -> None:  # noqa: F811
    from diffsampler.metrics import ode_error

    loose = ode_error.ode_error_metric  # the metric only has to score the cell: a loose reference is ~50× cheaper
    monkeypatch.setattr(ode_error, "ode_error_metric", lambda backbone, schedule, tol: loose(backbone, schedule, 1e-3))
    model = tiny / "tiny"
    r = invoke(
        "tune-grid",
        "--model",
        model,
        "--sampler",
        "dpm-solver++",
        "--nfe",
        3,
        "--batch",
        4,
        "--fine-steps",
        10,
        "--out",
        tmp_path / "g.json",
    )
    assert r.exit_code == 0, r.output
    assert "dpm-solver++, 3 steps (NFE 3): distance to the PF-ODE" in r.output
    tuned = load_grid(tmp_path / "g.json")
    assert tuned.steps == 3 and tuned.model == str(model) and tuned.batch == 4
    r = invoke("sample", "--model", model, "--grid", tmp_path / "g.json", "--n", 3, "--out", tmp_path / "s.png")
    assert r.exit_code == 0 and "3 steps" in r.output and "NFE 3 per sample" in r.output, r.output
    r = invoke(
        "sample",
        "--model",
        model,
        "--sampler",
        "ddim",
        "--grid",
        tmp_path / "g.json",
        "--n",
        3,
        "--out",
        tmp_path / "t.png",
    )
    assert r.exit_code == 2 and "the grid was tuned for sampler 'dpm-solver++', not 'ddim'" in r.output
    assert not (tmp_path / "t.png").exists()
    r = invoke(
        "sample",
        "--model",
        model,
        "--sampler",
        "ddim",
        "--grid",
        tmp_path / "g.json",
        "--force",
        "--n",
        3,
        "--out",
        tmp_path / "t.png",
        "--quiet",
    )
    assert r.exit_code == 0 and "warning:" in r.output and (tmp_path / "t.png").exists()
    r = invoke(
        "bench",
        "--model",
        model,
        "--samplers",
        "dpm-solver++",
        "--grid",
        tmp_path / "g.json",
        "--metric",
        "ode-error",
        "--num-samples",
        4,
        "--out",
        tmp_path / "bench",
    )
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert len(rows) == 1 and rows[0]["steps"] == 3 and "tuned" in rows[0]["options"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--nfe", "0"], "--nfe must be ≥ 1, got 0"),
        (["--out", "grid.txt"], "--out 'grid.txt' must be a .json file"),
        (["--out", "nowhere/grid.json"], "folder 'nowhere' does not exist"),
        (["--sampler", "nope"], "unknown --sampler 'nope'"),
        (["--sampler", "pndm", "--nfe", "1"], "nfe=1 is less than one step of sampler 'pndm' costs"),
        (["--opt", "nope=1"], "unknown option 'nope' for sampler 'dpm-solver++'"),
        (["--refine", "-1"], "--refine must be ≥ 0, got -1"),
    ],
)
def test_tune_grid_bad_input_is_one_line(tmp_path, monkeypatch, args, message) -> None:
    monkeypatch.chdir(tmp_path)
    r = invoke("tune-grid", "--model", "gmm-ring", "--batch", 4, "--fine-steps", 10, *args)
    assert r.exit_code == 2 and message in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert list(tmp_path.iterdir()) == []
