"""The command line, through typer's CliRunner and through the installed console script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel
from safetensors.torch import load_file
from typer.testing import CliRunner

import diffsampler as ds
from diffsampler.classifier import DigitClassifier
from diffsampler.cli import app

from .test_registry import write_plugin

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A class-conditional 8×8 pipeline folder (3 classes, null label 3) and a noisy classifier beside it."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        num_class_embeds=4,
    )
    unet.save_pretrained(root / "tiny" / "unet")
    DDPMScheduler(beta_schedule="linear").save_pretrained(root / "tiny" / "scheduler")
    (root / "tiny" / "diffsampler.json").write_text(json.dumps({"null_class_label": 3}))
    DigitClassifier(num_classes=3, width=8).save_pretrained(root / "clf")
    torch.manual_seed(0)
    plain = UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )
    plain.save_pretrained(root / "plain" / "unet")
    DDPMScheduler(beta_schedule="linear").save_pretrained(root / "plain" / "scheduler")
    return root


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_list_shows_every_kind_with_origin_and_description() -> None:
    r = invoke("list")
    assert r.exit_code == 0
    for header in ("samplers:", "schedules:", "spacings:", "guidance:", "backbones:", "metrics:", "models:"):
        assert header in r.output
    line = next(ln for ln in r.output.splitlines() if ln.strip().startswith("ddim "))
    assert "built-in" in line and "DDIM" in line
    assert "digits" in invoke("list", "models").output


def test_list_unknown_kind_exits_2() -> None:
    r = invoke("list", "widgets")
    assert r.exit_code == 2 and "widgets" in r.output


@pytest.mark.parametrize("sampler", ds.SAMPLERS.names())
def test_every_sampler_by_name(tiny, tmp_path, sampler: str) -> None:
    out = tmp_path / "s.safetensors"
    r = invoke(
        "sample", "--model", tiny / "tiny", "--sampler", sampler, "--steps", 3, "--n", 2, "--class", 1, "--out", out
    )
    assert r.exit_code == 0, r.output
    assert f"sampler {sampler}, 3 steps" in r.output and "NFE" in r.output and f"wrote {out}" in r.output
    x = load_file(str(out))
    assert x["samples"].shape == (2, 1, 8, 8) and torch.isfinite(x["samples"]).all()
    assert x["labels"].tolist() == [1, 1]


def test_guidance_and_sampler_options(tiny, tmp_path) -> None:
    out = tmp_path / "g.npz"
    r = invoke(
        "sample",
        "--model",
        tiny / "tiny",
        "--steps",
        4,
        "--n",
        3,
        "--class",
        "0,1,2",
        "--guidance",
        "cfg",
        "--scale",
        3,
        "--out",
        out,
        "--sampler",
        "ddim",
        "--opt",
        "eta=0.5",
    )
    assert r.exit_code == 0, r.output
    assert "guidance cfg (scale 3)" in r.output and "NFE 8 per sample" in r.output
    assert np.load(out)["labels"].tolist() == [0, 1, 2]
    r = invoke(
        "sample",
        "--model",
        tiny / "tiny",
        "--steps",
        4,
        "--n",
        2,
        "--class",
        2,
        "--guidance",
        "classifier",
        "--classifier",
        tiny / "clf",
        "--scale",
        2,
        "--out",
        tmp_path / "c.png",
    )
    assert r.exit_code == 0, r.output
    assert "guidance classifier (scale 2)" in r.output and (tmp_path / "c.png").stat().st_size > 0


def test_class_defaults_all_none(tiny, tmp_path) -> None:
    """A class-conditional model samples each class in turn unless told otherwise; ``none`` is unconditional."""

    def labels(*args) -> tuple[list[int] | None, str]:
        out = tmp_path / "c.safetensors"
        r = invoke("sample", "--steps", 2, "--n", 5, "--out", out, *args)
        assert r.exit_code == 0, r.output
        x = load_file(str(out))
        return (x["labels"].tolist() if "labels" in x else None), r.output

    default, said = labels("--model", tiny / "tiny")
    assert default == [0, 1, 2, 0, 1] and "classes 0–2 in turn" in said
    assert labels("--model", tiny / "tiny", "--class", "all")[0] == default
    none, said = labels("--model", tiny / "tiny", "--class", "none")
    assert none is None and "unconditional" in said
    plain, said = labels("--model", tiny / "plain")
    assert plain is None and "unconditional" in said
    r = invoke("sample", "--model", tiny / "plain", "--class", "all", "--out", tmp_path / "p.png")
    assert r.exit_code == 2 and "not class-conditional" in r.output


def test_output_formats_and_trajectory(tiny, tmp_path) -> None:
    from PIL import Image

    base = ["sample", "--model", tiny / "tiny", "--steps", 3, "--n", 5, "--quiet"]
    assert invoke(*base, "--out", tmp_path / "grid.png", "--save-trajectory", tmp_path / "traj.png").exit_code == 0
    grid = Image.open(tmp_path / "grid.png")
    assert grid.size == (3 * 10 + 2, 2 * 10 + 2)  # 5 images of 8×8 with 2-pixel padding, 3 a row
    traj = Image.open(tmp_path / "traj.png")
    assert traj.size == (3 * 10 + 2, 4 * 10 + 2)  # 3 steps across, the first 4 samples down
    assert invoke(*base, "--out", tmp_path / "pngs").exit_code == 0
    assert sorted(p.name for p in (tmp_path / "pngs").iterdir()) == [f"{i:05d}.png" for i in range(5)]
    assert Image.open(tmp_path / "pngs" / "00003.png").size == (8, 8)
    r = invoke(*base[:-1], "--out", tmp_path / "q.npz", "--quiet")
    assert r.exit_code == 0 and r.output == ""


def test_bf16_network_samples_like_fp32(tiny, tmp_path) -> None:
    def run(dtype: str) -> torch.Tensor:
        out = tmp_path / f"{dtype}.safetensors"
        r = invoke(
            "sample",
            "--model",
            tiny / "tiny",
            "--steps",
            4,
            "--n",
            6,
            "--dtype",
            dtype,
            "--device",
            "cpu",
            "--out",
            out,
            "--quiet",
        )
        assert r.exit_code == 0, r.output
        return load_file(str(out))["samples"]

    full, half = run("fp32"), run("bf16")
    assert half.dtype == torch.float32 and not torch.equal(full, half)  # the network ran in bf16
    err = (half - full).abs()  # bf16 keeps ~3 digits; a few pixels near the x̂₀ clip may flip further
    assert err.mean() < 0.02 and (err > 0.05).float().mean() < 0.02, (err.mean(), err.max())


def test_seed_and_batch_size_invariance(tiny, tmp_path) -> None:
    def run(bs: int, seed: int) -> torch.Tensor:
        out = tmp_path / f"b{bs}-s{seed}.safetensors"
        r = invoke(
            "sample",
            "--model",
            tiny / "tiny",
            "--steps",
            3,
            "--n",
            5,
            "--batch-size",
            bs,
            "--seed",
            seed,
            "--class",
            "0,1,2",
            "--out",
            out,
            "--quiet",
        )
        assert r.exit_code == 0, r.output
        return load_file(str(out))["samples"]

    a, b = run(5, 0), run(2, 0)
    # another batch size picks other kernels, whose reductions (~10³ terms) round ε differently by ~1e-6; the first
    # step's x̂₀ = (x − √(1−ᾱ)·ε)/√ᾱ multiplies that by 1/√ᾱ_T (≈ 155 on this linear schedule), later steps less
    tol = 1e-6 / ds.SCHEDULES.get("linear")().alpha(1.0).item()
    torch.testing.assert_close(a, b, rtol=0, atol=tol)
    assert torch.equal(a, run(5, 0))
    assert not torch.allclose(a, run(5, 1))


ERRORS = [
    (["--sampler", "nope"], "unknown --sampler 'nope'; accepted: ddim"),
    (["--schedule", "nope"], "unknown --schedule 'nope'; accepted: cosine"),
    (
        ["--spacing", "nope"],
        "unknown --spacing 'nope'; accepted: ays, beta, beta57, ddim-uniform, edm, exponential, flow",
    ),
    (["--guidance", "nope", "--class", "1"], "unknown --guidance 'nope'; accepted: apg, autoguidance, cfg"),
    (["--guidance", "cfg", "--class", "none"], "--guidance cfg needs --class"),
    (["--guidance", "cfg", "--class", "1", "--scale", "-2"], "--guidance cfg: cfg scale must be a finite number ≥ 0"),
    (
        ["--guidance", "cfg-pp", "--class", "1", "--sampler", "heun"],
        "sampler 'heun' cannot re-noise with a second ε, which this guidance needs; samplers that can: ddim",
    ),
    (["--class", "9"], "--class '9': classes must lie in 0…2"),
    (["--class", "x"], "--class 'x' must be an integer"),
    (["--opt", "eta=-1", "--sampler", "ddim"], "eta must be ≥ 0, got -1"),
    (["--opt", "wrong=1"], "unknown option 'wrong' for sampler 'dpm-solver++'; accepted: order, lower_order_final"),
    (["--opt", "noequals"], "--opt: 'noequals' is not key=value"),
    (["--steps", "0"], "--steps 0: must be an integer ≥ 1"),
    (["--steps", "1001", "--sampler", "ddim"], "--steps 1001: more than the schedule's 1000"),
    (
        ["--steps", "1001", "--spacing", "leading"],
        "--steps 1001 --spacing leading: more than the schedule's 1000 training steps (spacing 'leading' picks",
    ),
    (["--device", "tpu"], "unknown --device 'tpu'; accepted: auto, cpu, cuda"),
    (["--dtype", "fp8"], "unknown --dtype 'fp8'; accepted: fp32, fp16, bf16"),
    (["--dtype", "fp16", "--device", "cpu"], "--dtype fp16 needs a GPU; on the CPU use fp32 or bf16"),
    (["--save-trajectory", "t.gif"], "--save-trajectory 't.gif' must be a .png file"),
    (["--sigmas", "500,3,0"], "--sigmas '500,3,0': sigma 500 is above this schedule's σ_max = 157.4"),
    (["--times", "1,x"], "--times '1,x': must be comma-separated numbers"),
    (["--times", "1,0.6,0.7,0"], "--times '1,0.6,0.7,0': grid times must be strictly decreasing"),
    (["--sigmas", "3,1,0", "--spacing", "karras"], "--sigmas gives the times: leave out --spacing"),
    (["--sigmas", "3,1,0", "--times", "1,0"], "--sigmas gives the times: leave out --times"),
]


@pytest.mark.parametrize("args,message", ERRORS)
def test_bad_input_exits_2_with_one_line_and_no_file(tiny, tmp_path, monkeypatch, args, message) -> None:
    monkeypatch.chdir(tmp_path)
    r = invoke("sample", "--model", tiny / "tiny", "--steps", 3, "--n", 2, "--out", "out.png", *args)
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_model_errors(tiny, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cases = {"missing": ["--model", tmp_path / "nowhere"]}
    shutil.copytree(tiny / "tiny", tmp_path / "corrupt")
    w = tmp_path / "corrupt" / "unet" / "diffusion_pytorch_model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    cases["corrupt"] = ["--model", tmp_path / "corrupt"]
    (tmp_path / "p").mkdir()
    torch.save({}, tmp_path / "p" / "m.ckpt")
    cases["pickle"] = ["--model", tmp_path / "p" / "m.ckpt", "--config", tiny / "tiny" / "unet" / "config.json"]
    cases["class on plain"] = ["--model", tiny / "plain", "--class", "1"]
    cases["unwritable"] = ["--model", tiny / "tiny", "--out", tmp_path / "no" / "dir" / "x.png"]
    cases["bad suffix"] = ["--model", tiny / "tiny", "--out", "x.jpg"]
    messages = {
        "missing": "not found",
        "corrupt": "cannot read safetensors file",
        "pickle": "pickle checkpoint",
        "class on plain": "--class given, but the model is not class-conditional",
        "unwritable": "does not exist",
        "bad suffix": "unknown output kind '.jpg'",
    }
    before = set(tmp_path.rglob("*"))
    for name, args in cases.items():
        r = invoke("sample", "--steps", 2, "--n", 1, *args)
        assert r.exit_code == 2 and messages[name] in r.output and "Traceback" not in r.output, (name, r.output)
    assert set(tmp_path.rglob("*")) == before
    r = invoke("sample", "--steps", 2, "--n", 1, "--model", tmp_path / "nowhere", "--debug")
    assert r.exit_code != 0 and isinstance(r.exception, ValueError)


def test_plugin_sampler_on_the_command_line(tiny, tmp_path, monkeypatch) -> None:
    write_plugin(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert "ds-plugin-demo" in invoke("list", "samplers").output
        r = invoke(
            "sample",
            "--model",
            tiny / "tiny",
            "--sampler",
            "demo-euler",
            "--steps",
            3,
            "--n",
            1,
            "--out",
            tmp_path / "p.png",
            "--opt",
            "scale=1.0",
        )
        assert r.exit_code == 0, r.output
        assert "sampler demo-euler" in r.output and (tmp_path / "p.png").is_file()
    finally:
        sys.modules.pop("ds_plugin_demo", None)


def test_info(tiny) -> None:
    r = invoke("info", tiny / "tiny")
    assert r.exit_code == 0 and "UNet2DModel" in r.output and "null label 3" in r.output


def test_console_script(tiny, tmp_path) -> None:
    exe = shutil.which("diffsampler")
    assert exe, "the console script is installed with the package"
    out = tmp_path / "s.png"
    r = subprocess.run(
        [exe, "sample", "--model", str(tiny / "tiny"), "--steps", "2", "--n", "2", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0 and out.is_file() and "wrote" in r.stdout, r.stderr
    r = subprocess.run(
        [exe, "sample", "--model", str(tiny / "tiny"), "--sampler", "nope", "--out", str(out) + "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2 and r.stderr.startswith("error: unknown --sampler") and "Traceback" not in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "diffsampler", "list", "samplers"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0 and "pf-ode" in r.stdout


def test_trained_unet_is_a_drop_in_copy_of_the_bundled_model(tmp_path) -> None:
    """``train unet --out`` writes a pipeline folder with its null label, shows progress from the first step."""
    out = tmp_path / "my-digits"
    r = invoke("train", "unet", "--out", out, "--iters", 2)
    assert r.exit_code == 0, r.output
    assert "training unet: step 1/2, loss" in r.output and "left" in r.output
    assert json.loads((out / "diffsampler.json").read_text())["null_class_label"] == 10
    r = invoke("sample", "--model", out, "--steps", 2, "--n", 12, "--out", tmp_path / "s.safetensors", "--quiet")
    assert r.exit_code == 0, r.output
    assert load_file(str(tmp_path / "s.safetensors"))["labels"].tolist() == list(range(10)) + [0, 1]
    for args in (["--class", "none"], ["--guidance", "cfg"]):
        r = invoke("sample", "--model", out, "--steps", 2, "--n", 2, "--out", tmp_path / "t.png", *args)
        assert r.exit_code == 0, r.output


def test_spacing_options_reach_the_grid(tiny, tmp_path) -> None:  # noqa: F811
    """``--spacing-opt`` sets a spacing's option: the ays list for SDXL differs from SD 1's in the samples."""
    outs = []
    for model in ("sd1", "sdxl"):
        out = tmp_path / f"{model}.safetensors"
        r = invoke(
            "sample",
            "--model",
            tiny / "tiny",
            "--sampler",
            "ddim",
            "--steps",
            4,
            "--n",
            2,
            "--spacing",
            "ays",
            "--spacing-opt",
            f"model={model}",
            "--out",
            out,
            "--quiet",
        )
        assert r.exit_code == 0, r.output
        outs.append(load_file(str(out))["samples"])
    assert outs[0].shape == outs[1].shape and not torch.equal(outs[0], outs[1])


@pytest.mark.parametrize(
    "args,nfe",
    [
        (["--guidance", "apg", "--scale", "2", "--guidance-opt", "momentum=-0.5"], 6),
        (["--guidance", "cfg-zero-star", "--scale", "2"], 6),
        (["--guidance", "cfg-pp", "--scale", "0.5", "--sampler", "unipc"], 6),
        (["--guidance", "pag", "--class", "none", "--guidance-opt", "layers=mid"], 6),
        (["--guidance", "pag", "--guidance-opt", "cfg_scale=2"], 9),
        (["--guidance", "dynamic-thresholding", "--guidance-opt", "percentile=0.9", "--class", "none"], 3),
    ],
)
def test_new_guidance_from_the_command_line(tiny, tmp_path, args, nfe: int) -> None:  # noqa: F811
    r = invoke("sample", "--model", tiny / "tiny", "--steps", 3, "--n", 3, "--out", tmp_path / "g.png", *args)
    assert r.exit_code == 0 and f"NFE {nfe} per sample" in r.output, r.output


def test_help_groups_the_options_and_lists_every_guidance_from_the_registry() -> None:
    r = runner.invoke(app, ["sample", "--help"], env={"COLUMNS": "400"})
    assert r.exit_code == 0, r.output
    for panel in ("Model", "Sampling", "Guidance", "Output", "Run", "Text-to-image"):
        assert f"─ {panel} ─" in r.output, panel
    listed = [n for n in ds.GUIDANCE.names() if ds.GUIDANCE.meta(n)["cli"]]
    assert "compose" not in listed and {"pag", "autoguidance", "cfg-pp", "classifier"} <= set(listed)
    assert f"Guidance method: {', '.join(listed)}." in r.output


def test_pag_summary_names_the_pag_scale(tmp_path) -> None:
    """PAG's --scale is its own scale; CFG's under it (cfg_scale) stays 1."""
    r = runner.invoke(
        app,
        ["sample", "--guidance", "pag", "--scale", "5", "--steps", "2", "--n", "2", "--out", str(tmp_path / "s.png")],
    )
    assert r.exit_code == 0, r.output
    assert "guidance pag (scale 5)" in r.output, r.output


def test_learn_solver_then_sample_and_bench_with_it(tiny, tmp_path) -> None:
    model, out = tiny / "tiny", tmp_path / "solver.json"
    r = invoke(
        "learn-solver",
        "--model",
        model,
        "--nfe",
        2,
        "--pairs",
        8,
        "--batch-size",
        4,
        "--epochs",
        1,
        "--teacher-steps",
        4,
        "--spacing",
        "trailing",
        "--out",
        out,
    )
    assert r.exit_code == 0, r.output
    assert "learned-dpm-solver++, NFE 2 (from trailing)" in r.output and out.is_file()
    assert not out.with_name(out.name + ".ckpt.safetensors").exists()  # kept only while a run is unfinished
    solver = ds.load_solver(out)
    assert solver.model == str(model) and solver.seeds["num_pairs"] == 8 and len(solver.history) == 1
    s = invoke("sample", "--model", model, "--solver", out, "--n", 2, "--class", 1, "--out", tmp_path / "s.safetensors")
    assert s.exit_code == 0, s.output
    assert "sampler learned-dpm-solver++, 2 steps" in s.output and "NFE 2 per sample" in s.output
    b = invoke(
        "bench",
        "--model",
        model,
        "--samplers",
        "",
        "--solver",
        out,
        "--metric",
        "ode-error",
        "--num-samples",
        4,
        "--batch-size",
        4,
        "--out",
        tmp_path / "bench",
    )
    assert b.exit_code == 0, b.output
    assert "learned base=dpm-solver++ init_spacing=trailing solver=solver steps 2: NFE 2" in b.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["--spacing", "karras"], "--solver sets the sampler and its times: leave out --spacing"),
        (["--model", "digits"], "the solver was learned for model"),
    ],
)
def test_sample_with_a_solver_refuses_what_contradicts_it(tiny, tmp_path, args, message) -> None:
    from diffsampler.learned import initial_solver

    schedule = ds.DiffusersBackbone.from_pretrained(tiny / "tiny").schedule
    initial_solver(schedule, 3, "trailing", model=str(tiny / "tiny")).save(tmp_path / "s.json")
    r = invoke(
        "sample",
        "--model",
        tiny / "tiny",
        "--solver",
        tmp_path / "s.json",
        "--n",
        2,
        *args,
        "--out",
        tmp_path / "x.png",
    )
    assert r.exit_code == 2 and message in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "x.png").exists()


def test_learn_solver_bad_input(tiny, tmp_path) -> None:
    for args, message in (
        (["--loss", "lpips"], "unknown --loss 'lpips'; accepted: l2, features"),
        (["--nfe", "1"], "--nfe must be ≥ 2, got 1"),
        (["--base", "heun"], "unknown --base 'heun'; accepted: dpm-solver++"),
        (["--out", str(tmp_path / "s.txt")], "must be a .json file"),
    ):
        r = invoke("learn-solver", "--model", tiny / "tiny", *args)
        assert r.exit_code == 2 and message in r.output and len(r.output.strip().splitlines()) == 1, r.output


def test_sigmas_and_times_walk_the_grid_python_walks(tiny, tmp_path) -> None:
    """--sigmas is ``grid=sigma_tools.times_from_sigmas(…)`` and --times is ``grid=…``: the same samples."""
    from safetensors.torch import load_file

    def run(*flags) -> torch.Tensor:
        out = tmp_path / f"{len(list(tmp_path.iterdir()))}.safetensors"
        r = invoke("sample", "--model", tiny / "tiny", "--n", 2, "--class", "none", "--out", out, "--quiet", *flags)
        assert r.exit_code == 0, r.output
        return load_file(str(out))["samples"]

    sched = ds.bundled.load_model(tiny / "tiny").schedule
    sigmas = [20.0, 5.0, 1.0, 0.2, 0.0]
    by_sigmas = run("--sigmas", ",".join(map(str, sigmas)))
    times = ds.sigma_tools.times_from_sigmas(sched, sigmas)
    by_times = run("--times", ",".join(repr(t) for t in times.tolist()))
    assert torch.equal(by_sigmas, by_times)  # the same float64 times either way (repr round-trips them)
    assert not torch.allclose(by_sigmas, run("--steps", "4"))


def test_learn_a_stochastic_solver_then_sample_with_it(tiny, tmp_path) -> None:
    model, out = tiny / "tiny", tmp_path / "sde.json"
    args = ["--nfe", 2, "--pairs", 16, "--batch-size", 8, "--epochs", 1, "--teacher-steps", 4, "--out", out]
    r = invoke("learn-solver", "--model", model, "--base", "dpm-solver++-sde", *args)
    assert r.exit_code == 0, r.output
    assert "learned-dpm-solver++-sde, NFE 2 (from trailing)" in r.output
    solver = ds.load_solver(out)
    assert solver.teacher["sampler"] == "dpm-solver++-sde" and len(solver.etas) == 2 and solver.history
    outs = []
    for seed in (0, 0, 1):
        path = tmp_path / f"s{len(outs)}.safetensors"
        s = invoke("sample", "--model", model, "--solver", out, "--n", 2, "--seed", seed, "--out", path)
        assert s.exit_code == 0, s.output
        outs.append(path.read_bytes())
    assert outs[0] == outs[1] != outs[2]  # its noise follows the seed
