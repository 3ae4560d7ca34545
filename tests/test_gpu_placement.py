"""Device placement, checked without a GPU: on a model "on cuda" (tests/fake_cuda.py), every sampler, schedule
and guidance keeps its tensors on the model's device and gives the CPU's samples."""

from __future__ import annotations

import contextlib
import functools
import importlib
from pathlib import Path
from typing import Any

import pytest
import torch

import diffsampler as ds
from diffsampler.backbones import DiffusersBackbone
from diffsampler.bundled import load_model
from diffsampler.guidance import GUIDANCE

from .fake_cuda import FakeCuda, on_cuda, to_fake_cuda
from .test_diffusers_backbone import tiny_unet
from .test_matrix import CASES

STEPS = 6


def test_fake_cuda_refuses_what_cuda_refuses() -> None:
    cpu = torch.ones(3)
    with FakeCuda():
        gpu = cpu.to("cuda")
        assert gpu.device.type == "cuda" and cpu.device.type == "cpu" and not on_cuda(cpu)
        assert on_cuda(gpu * torch.tensor(2.0)) and on_cuda(torch.zeros(2, device=gpu.device))
        assert on_cuda(gpu[torch.tensor([0, 2])]) and not on_cuda(gpu.cpu())
        with pytest.raises(RuntimeError, match="mixes cuda"):
            gpu + cpu
        with pytest.raises(RuntimeError, match="mixes cuda"):
            cpu[torch.tensor([0]).to(gpu.device)]
        with pytest.raises(RuntimeError, match="mixes cuda"):
            to_fake_cuda(torch.nn.Linear(3, 2))(cpu)


def tiny_backbone(schedule: str) -> DiffusersBackbone:
    unet = tiny_unet(num_class_embeds=4)
    sched = ds.SCHEDULES.get(schedule)()
    zero_snr = sched.alpha_bar(1.0).item() == 0  # ε says nothing of x_0 there
    return DiffusersBackbone(unet, sched, prediction_type="v_prediction" if zero_snr else "epsilon", null_class_label=3)


def on_both(backbone: DiffusersBackbone, models: list[torch.nn.Module] = (), **kwargs) -> tuple:
    """(samples on the CPU, samples on the fake GPU) from the same x_T and per-sample generators."""
    x_T = torch.randn(2, *backbone.sample_shape, generator=torch.Generator().manual_seed(0))
    gens = lambda: ds.sampling.generators(1, 2)  # noqa: E731
    cpu = ds.sample(backbone, x_T=x_T, generator=gens(), **kwargs)
    for m in [backbone.unet, *models]:
        to_fake_cuda(m)
    with FakeCuda():
        gpu = ds.sample(backbone, x_T=x_T.to("cuda"), generator=gens(), **kwargs)
        assert on_cuda(gpu), "the samples left the model's device"
    return cpu, gpu


# every sampler on a discrete schedule (a table indexed by time); in the slow set, on a continuous one too,
# and every schedule with one sampler of each kind (first-order, multistep, stochastic)
SLOW = pytest.mark.slow
MATRIX = (
    [(n, o, "linear") for n, o in CASES if o.get("method") != "rk45"]
    + [pytest.param(n, o, "cosine", marks=SLOW) for n, o in CASES if o.get("method") != "rk45"]
    + [
        pytest.param(n, o, s, marks=SLOW)
        for n, o in (("ddim", {}), ("unipc", {}), ("dpm-solver++-sde", {}))
        for s in ds.SCHEDULES.names()
        if s not in ("linear", "cosine")
    ]
)


@pytest.mark.parametrize("name,options,schedule", MATRIX)
def test_every_sampler_and_schedule_stays_on_the_device(name: str, options: dict, schedule: str) -> None:
    backbone = tiny_backbone(schedule)
    cpu, gpu = on_both(backbone, sampler=name, steps=STEPS, cond={"class_labels": torch.tensor([0, 2])}, **options)
    assert torch.equal(cpu, gpu)


@SLOW
def test_adaptive_pf_ode_stays_on_the_device() -> None:  # its step-size control: one schedule is enough
    cpu, gpu = on_both(
        tiny_backbone("cosine"),
        sampler="pf-ode",
        method="rk45",
        steps=STEPS,
        cond={"class_labels": torch.tensor([0, 2])},
    )
    assert torch.equal(cpu, gpu)


@pytest.mark.parametrize("name", [n for n in GUIDANCE.names() if GUIDANCE.meta(n)["cli"]])
def test_every_guidance_stays_on_the_device(name: str) -> None:
    from diffsampler.cli import _model_option

    models = {
        option: _model_option(option, None, default) for option, default in GUIDANCE.meta(name)["cli_models"].items()
    }
    guidance = GUIDANCE.get(name)(**models)
    backbone = load_model("digits")
    nets = [getattr(m, "unet", m) for m in models.values()]
    cond = {"class_labels": torch.tensor([3, 7])} if GUIDANCE.meta(name)["labels"] else {}
    cpu, gpu = on_both(backbone, nets, sampler="dpm-solver++", steps=4, guidance=guidance, cond=cond)
    assert torch.equal(cpu, gpu)


def test_bench_and_the_leaderboard_run_on_the_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, own_registries: None
) -> None:
    """Their cells on the device equal the CPU's; the diffusers samplers the leaderboard registers go after."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    import leaderboard

    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    backbone, schedule, sched = leaderboard.setting("digits-cond")
    metric = leaderboard.metric_of("digits-cond", backbone, schedule)
    samplers = ["dpm-solver++-sde", "unipc", "diffusers-dpm++2m", "diffusers-unipc"]
    kwargs = dict(
        samplers=samplers,
        nfe=[3],
        metric=metric,
        num_samples=8,
        batch_size=4,
        schedule=schedule,
        model_name="digits-cond",
        cond=leaderboard.cond_of("digits-cond"),
        plots=False,
    )
    cpu = ds.bench.bench(backbone, out=tmp_path / "cpu", **kwargs)
    to_fake_cuda(backbone.unet)
    with FakeCuda():
        gpu = ds.bench.bench(backbone, out=tmp_path / "gpu", device=backbone.device, **kwargs)
        row = gpu[0]
        x, labels, x_T = leaderboard.redraw("digits-cond", row, backbone, schedule, metric)
    assert [r["device"] for r in gpu] == ["cuda"] * len(samplers)
    assert [r["value"] for r in gpu] == [r["value"] for r in cpu]
    assert not on_cuda(x) and metric.score(x, labels, x_T)[0] == row["value"]


def test_tune_grid_runs_on_the_device() -> None:
    from diffsampler.tuning import tune_grid

    backbone = tiny_backbone("linear")
    kwargs = dict(
        sampler="dpm-solver++",
        nfe=4,
        batch=4,
        fine_steps=12,
        refine_batch=2,
        cond={"class_labels": torch.tensor([0, 1, 2, 0])},
    )
    cpu = tune_grid(backbone, **kwargs)
    to_fake_cuda(backbone.unet)
    with FakeCuda():
        gpu = tune_grid(backbone, **kwargs)
    assert gpu.grid == cpu.grid and gpu.distance == cpu.distance


@pytest.mark.slow  # the bundled model and its metric, twice, the device half under a Python-level mode
@pytest.mark.parametrize("script", ["spacing_sweep", "grids"])
def test_the_sweep_scripts_run_on_the_device(
    script: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, own_registries: None
) -> None:
    """Their ``--device cuda`` cells run on the device, say so, and equal the CPU's."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    import leaderboard

    module = importlib.import_module(script)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    if script == "grids":  # the default tuning batches take minutes on the CPU
        from diffsampler.tuning import tune_grid

        monkeypatch.setattr(module, "tune_grid", functools.partial(tune_grid, batch=4, fine_steps=12, refine_batch=2))

    def setting_on(device: str) -> Any:
        def setting(target: str, _: str = "cpu") -> tuple[Any, Any, Any]:
            backbone, schedule, sched = leaderboard.setting(target)
            if device == "cuda":
                to_fake_cuda(backbone.unet)
            return backbone, schedule, sched

        return setting

    rows = {}
    for device in ("cpu", "cuda"):
        monkeypatch.setattr(module, "OUT", tmp_path / device)
        monkeypatch.setattr(module, "setting", setting_on(device))
        with FakeCuda() if device == "cuda" else contextlib.nullcontext():
            if script == "grids":
                module.run(["digits-uncond"], ["dpm-solver++"], [3], ["trailing"], num_samples=6, device=device)
            else:
                module.run(["digits-uncond"], [3], 6, ["trailing"], ["ddim", "dpm-solver++"], device=device)
        rows[device] = ds.bench.read_results(tmp_path / device / "digits-uncond")
    assert len(rows["cuda"]) == 2  # grids: the tuned grid and the trailing one
    assert [r["device"] for r in rows["cuda"]] == ["cuda"] * len(rows["cuda"])
    assert [r["value"] for r in rows["cuda"]] == [r["value"] for r in rows["cpu"]]
