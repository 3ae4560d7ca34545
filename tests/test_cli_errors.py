"""Hostile input to the command line: one ``error:`` line, exit code 2, no traceback, and no file left behind."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from diffsampler import images
from diffsampler.classifier import DigitClassifier
from diffsampler.cli import app, main

from .test_cli import tiny  # noqa: F401  (the tiny class-conditional pipeline and a classifier)

runner = CliRunner()


def sample(*args) -> object:
    return runner.invoke(app, ["sample", "--steps", "2", "--n", "2", *[str(a) for a in args]])


def assert_one_line_error(r, message: str) -> None:
    assert r.exit_code == 2, r.output
    assert message in r.output, r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1, r.output


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    out, err = capsys.readouterr()
    return e.value.code, out, err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["sample", "--steps", "2.5"], "--steps '2.5': Invalid value for '--steps'"),
        (["sample", "--n=x"], "--n 'x': Invalid value for '--n'"),
        (["sample", "--bogus", "1"], "No such option: --bogus"),
        (["frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_usage_errors_are_one_line(capsys, tmp_path, monkeypatch, argv, message) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(capsys, *argv)
    assert code == 2 and out == "" and message in err and err.startswith("error: "), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_no_arguments_show_help(capsys) -> None:
    code, out, _ = run_main(capsys)
    assert code == 0 and "sample" in out and "bench" in out


@pytest.fixture
def broken_models(tiny, tmp_path):  # noqa: F811
    """Copies of the tiny model, each broken in one way."""
    unet = tiny / "tiny" / "unet"
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    zero = tmp_path / "zero"
    shutil.copytree(tiny / "tiny", zero)
    cfg = json.loads((zero / "unet" / "config.json").read_text())
    (zero / "unet" / "config.json").write_text(json.dumps({**cfg, "norm_num_groups": 0}))
    evil = tmp_path / "evil"
    evil.mkdir()
    with (evil / "model.ckpt").open("wb") as fh:  # a pickle that is not a plain state dict of tensors
        pickle.dump({"x": Path("/etc/passwd")}, fh, protocol=2)
    wide = tmp_path / "wide"
    DigitClassifier(num_classes=3, width=16).save_pretrained(wide)
    cfg = json.loads((wide / "config.json").read_text())
    (wide / "config.json").write_text(json.dumps({**cfg, "width": 8}))
    return {
        "list": ["--model", unet / "diffusion_pytorch_model.safetensors", "--config", listed],
        "zero": ["--model", zero],
        "evil": ["--model", evil / "model.ckpt", "--config", unet / "config.json", "--allow-pickle"],
        "wide": ["--model", tiny / "tiny", "--class", "1", "--guidance", "classifier", "--classifier", wide],
    }


@pytest.mark.parametrize(
    "case,message",
    [
        ("list", "must hold a JSON object of settings, got a list"),
        ("zero", "does not build a UNet2DModel: ZeroDivisionError"),
        ("evil", "refused to load"),
        ("wide", "cannot load a classifier from"),
    ],
)
def test_broken_models_are_one_line(broken_models, tmp_path, monkeypatch, case, message) -> None:
    monkeypatch.chdir(tmp_path)
    before = files_in(tmp_path)
    r = sample(*broken_models[case], "--out", "out.png")
    assert_one_line_error(r, message)
    assert "weights_only" not in r.output  # never suggest the load that runs code
    assert files_in(tmp_path) == before


@pytest.mark.parametrize(
    "args,message",
    [
        (["--guidance", "cfg", "--class", "1", "--scale", "inf"], "cfg scale must be a finite number ≥ 0, got inf"),
        (["--opt", "lower_order_final=maybe"], "takes true or false, got 'maybe'"),
        (["--sampler", "ddim", "--opt", "eta=abc"], "option 'eta' of sampler 'ddim' takes a number, got 'abc'"),
        (["--out", ""], "--out is empty"),
        (
            ["--guidance", "cfg", "--class", "1", "--classifier", "/nonexistent"],
            "--classifier is for --guidance classifier",
        ),
        (
            ["--guidance", "classifier", "--class", "1", "--classifier", "/nonexistent"],
            "--classifier '/nonexistent': no such",
        ),
        (["--guidance", "cfg", "--class", "1", "--guidance-opt", "nope=1"], "unknown option 'nope' for guidance 'cfg'"),
        (["--guidance-opt", "rescale=0.5"], "--guidance-opt needs --guidance"),
        (["--save-trajectory", "out.png"], "--save-trajectory 'out.png' is the --out file"),
        (["--n", str(10**12)], "need about"),
        (
            ["--guidance", "dynamic-thresholding", "--scale", "2"],
            "--scale: guidance 'dynamic-thresholding' has no scale",
        ),
        (["--guidance", "apg", "--class", "1", "--guidance-opt", "space=v"], "apg space must be x0 or eps, got 'v'"),
        (["--spacing", "ays", "--spacing-opt", "nope=1"], "unknown option 'nope' for spacing 'ays'; accepted: model"),
        (["--spacing", "karras", "--spacing-opt", "rho=abc"], "option 'rho' of spacing 'karras' takes a number"),
        (["--spacing", "ays", "--spacing-opt", "model=svd"], "starts at σ = 700, above this schedule's σ_max"),
        (["--spacing", "ays", "--spacing-opt", "model=sd3"], "unknown ays model 'sd3'; known: sd1, sdxl, svd"),
    ],
)
def test_silently_accepted_input_is_refused(tiny, tmp_path, monkeypatch, args, message) -> None:  # noqa: F811
    monkeypatch.chdir(tmp_path)
    r = (
        sample("--model", tiny / "tiny", "--out", "out.png", *args)
        if "--out" not in args
        else sample("--model", tiny / "tiny", *args)
    )
    assert_one_line_error(r, message)
    assert list(tmp_path.iterdir()) == []


def test_config_only_for_a_weights_file(tiny, tmp_path, monkeypatch) -> None:  # noqa: F811
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(sample("--config", "/nonexistent.json"), "--config is for a single weights file")
    weights = tiny / "tiny" / "unet" / "diffusion_pytorch_model.safetensors"
    assert_one_line_error(
        sample("--model", weights, "--config", "/nonexistent.json"), "--config '/nonexistent.json': no such file"
    )
    assert list(tmp_path.iterdir()) == []


def test_weights_file_finds_or_defaults_its_schedule(tiny, tmp_path, monkeypatch) -> None:  # noqa: F811
    """A lone weights file samples with the DDPM linear schedule and says so; in a pipeline it finds its own."""
    monkeypatch.chdir(tmp_path)
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(tiny / "plain" / "unet" / "diffusion_pytorch_model.safetensors", lone / "w.safetensors")
    r = runner.invoke(
        app,
        [
            "sample",
            "--steps",
            "2",
            "--n",
            "2",
            "--model",
            str(lone / "w.safetensors"),
            "--config",
            str(tiny / "plain" / "unet" / "config.json"),
            "--out",
            "a.png",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "note: " in r.output and "using the DDPM linear schedule (--schedule to choose another)" in r.output
    inside = tiny / "tiny" / "unet"
    r = sample(
        "--model",
        inside / "diffusion_pytorch_model.safetensors",
        "--config",
        inside / "config.json",
        "--class",
        "none",
        "--out",
        "b.png",
    )
    assert r.exit_code == 0 and "note:" not in r.output and "unconditional" in r.output, r.output


def test_model_folder_inside_a_pipeline_keeps_its_null_label(tiny, tmp_path, monkeypatch) -> None:  # noqa: F811
    monkeypatch.chdir(tmp_path)
    r = sample("--model", tiny / "tiny" / "unet", "--n", "4", "--guidance", "cfg", "--out", "s.safetensors")
    assert r.exit_code == 0, r.output
    assert load_file("s.safetensors")["labels"].tolist() == [0, 1, 2, 0]  # the null label 3 is not a class


def test_failing_trajectory_leaves_no_output(tiny, tmp_path, monkeypatch) -> None:  # noqa: F811
    monkeypatch.chdir(tmp_path)
    real = images.write_png

    def disk_full(path, array):
        if ".traj.png." in Path(path).name:
            raise OSError(28, "No space left on device")
        real(path, array)

    monkeypatch.setattr(images, "write_png", disk_full)
    r = sample("--model", tiny / "tiny", "--out", "out.png", "--save-trajectory", "traj.png")
    assert_one_line_error(r, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_full_disk_while_writing_safetensors(tiny, tmp_path, monkeypatch) -> None:  # noqa: F811
    import safetensors.torch
    from safetensors import SafetensorError

    monkeypatch.chdir(tmp_path)

    def full(tensors, path):
        Path(path).write_bytes(b"\x00" * 10)
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    r = sample("--model", tiny / "tiny", "--out", "out.safetensors")
    assert_one_line_error(r, "StorageFull")
    assert list(tmp_path.iterdir()) == []


def test_folder_output_is_atomic_and_never_mixed(tiny, tmp_path, monkeypatch) -> None:  # noqa: F811
    monkeypatch.chdir(tmp_path)
    real = images.write_png
    written = []

    def interrupted(path, array):
        written.append(path)
        if len(written) == 3:
            raise KeyboardInterrupt
        real(path, array)

    monkeypatch.setattr(images, "write_png", interrupted)
    r = sample("--model", tiny / "tiny", "--n", "5", "--out", "pngs")
    assert r.exit_code == 130, r.output  # Ctrl-C
    assert list(tmp_path.iterdir()) == [], "Ctrl-C leaves neither a partial folder nor temporaries"
    monkeypatch.setattr(images, "write_png", real)
    assert sample("--model", tiny / "tiny", "--n", "5", "--out", "pngs").exit_code == 0
    assert files_in(tmp_path) == ["pngs"] + [f"pngs/{i:05d}.png" for i in range(5)]
    assert_one_line_error(sample("--model", tiny / "tiny", "--n", "2", "--out", "pngs"), "the folder is not empty")
    assert sample("--model", tiny / "tiny", "--n", "2", "--out", "pngs", "--overwrite").exit_code == 0
    assert files_in(tmp_path) == ["pngs", "pngs/00000.png", "pngs/00001.png"], "no stale PNGs mixed in"


def test_temporaries_of_killed_runs_are_removed(tiny, tmp_path, monkeypatch) -> None:  # noqa: F811
    monkeypatch.chdir(tmp_path)
    dead = tmp_path / ".out.png.partial-999999999-abc"  # no such process
    dead.write_bytes(b"half a png")
    (tmp_path / ".pngs.partial-999999999-xyz").mkdir()
    live = tmp_path / f".out.png.partial-{os.getpid()}-def"  # a run still writing: left alone
    live.write_bytes(b"")
    assert sample("--model", tiny / "tiny", "--out", "out.png").exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".pngs.partial-999999999-xyz", live.name, "out.png"])
    assert sample("--model", tiny / "tiny", "--out", "pngs").exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "out.png", "pngs"])


BROKEN_PLUGIN = "import sys\nsys.exit(3)\n"


def test_list_imports_no_plugin(tiny, tmp_path, monkeypatch) -> None:  # noqa: F811
    (tmp_path / "ds_exits.py").write_text(BROKEN_PLUGIN)
    info = tmp_path / "ds_exits-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ds-exits\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[diffsampler.samplers]\nexits = ds_exits:sampler\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    r = runner.invoke(app, ["list"])
    assert r.exit_code == 0 and "models:" in r.output, r.output
    line = next(ln for ln in r.output.splitlines() if ln.strip().startswith("exits "))
    assert "ds-exits" in line and "plugin ds_exits:sampler" in line and "ds_exits" not in sys.modules
    monkeypatch.chdir(tmp_path)
    r = sample("--model", tiny / "tiny", "--sampler", "exits", "--out", "x.png")
    assert_one_line_error(r, "sampler plugin 'exits' from ds-exits failed to load")
    assert not (tmp_path / "x.png").exists()
