"""The diffusers adapter: loading (folders, single files, hub cache), conversions, conditioning, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel, UNet2DModel

import diffsampler as ds
from diffsampler.backbones import DiffusersBackbone, ModelLoadError


def tiny_unet(**kw) -> UNet2DModel:
    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=8,
        in_channels=2,
        out_channels=2,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        **kw,
    ).eval()


def tiny_condition_unet() -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=2,
        out_channels=2,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=4,
        cross_attention_dim=6,
        attention_head_dim=2,
    ).eval()


def save_pipeline(folder: Path, unet: torch.nn.Module, **sched) -> Path:
    unet.save_pretrained(folder / "unet")
    DDPMScheduler(**{"beta_schedule": "linear", **sched}).save_pretrained(folder / "scheduler")
    return folder


def _x(seed=0, shape=(3, 2, 8, 8)):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_pipeline_folder_round_trip(tmp_path) -> None:
    unet = tiny_unet()
    save_pipeline(tmp_path, unet, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    assert (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    bb = DiffusersBackbone.from_pretrained(tmp_path)
    ref = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    torch.testing.assert_close(bb.schedule.alphas_cumprod, ref.alphas_cumprod.double(), rtol=1e-4, atol=1e-7)
    assert bb.sample_shape == (2, 8, 8) and bb.prediction_type == "epsilon" and bb.clip == 1.0
    x, idx = _x(), torch.tensor([999, 500, 3])
    with torch.no_grad():
        expected = unet(x, idx).sample
    torch.testing.assert_close(bb.eps(x, bb.schedule.index_to_t(idx), bb.schedule), expected)


def test_dtype_cast_keeps_float32_modules_and_stays_quiet(tmp_path, monkeypatch) -> None:
    from diffusers.models import modeling_utils

    warned = []
    monkeypatch.setattr(modeling_utils.logger, "warning", lambda msg, *a, **k: warned.append(msg))
    monkeypatch.setattr(UNet2DModel, "_keep_in_fp32_modules", ["time_embedding"], raising=False)
    bb = DiffusersBackbone.from_pretrained(save_pipeline(tmp_path, tiny_unet()), dtype=torch.bfloat16)
    dtypes = {n: p.dtype for n, p in bb.unet.named_parameters()}
    assert all(d == (torch.float32 if n.startswith("time_embedding.") else torch.bfloat16) for n, d in dtypes.items())
    assert any(n.startswith("time_embedding.") for n in dtypes)
    bb.to(dtype=torch.float32)
    assert all(p.dtype == torch.float32 for p in bb.unet.parameters())
    assert warned == []


@pytest.mark.slow
def test_compiled_unet_samples_as_eager(tmp_path, mixture) -> None:
    """Inductor's graph computes what eager does, up to float32 rounding.

    A compiled graph reorders float32 sums and uses other sin/cos kernels, so its error against the
    float64 result is of the same kind and size as eager float32's own error against it; how large
    that is depends on the CPU (AVX2, AVX-512). So the bound is measured, not assumed: the compiled
    error may be a few times eager's (here 1.25×), while a wrong graph is off by ≥ 1e-2, thousands of times more.
    """
    folder = save_pipeline(tmp_path, tiny_unet())
    bb = DiffusersBackbone.from_pretrained(folder)
    x_T = _x(1)
    eager = ds.sample(bb, sampler="ddim", steps=4, x_T=x_T)
    exact = ds.sample(
        DiffusersBackbone.from_pretrained(folder, dtype=torch.float64), sampler="ddim", steps=4, x_T=x_T.double()
    )
    assert not bb.compiled and bb.compile() is bb and bb.compiled  # inductor, as the CLI's --compile
    assert type(bb.unet) is UNet2DModel and bb.sample_shape == (2, 8, 8)
    compiled = ds.sample(bb, sampler="ddim", steps=4, x_T=x_T)
    rounding = (eager.double() - exact).abs().max().item()
    assert 0 < rounding < 1e-3, rounding  # float32 rounding at this output scale (|x| ≤ 1): ~1e-5
    assert (compiled.double() - exact).abs().max().item() <= 8 * rounding
    with pytest.raises(TypeError, match="GaussianMixture has no network to compile"):
        mixture.compile()


def test_sampling_matches_a_diffusers_ddim_loop(tmp_path) -> None:
    unet = tiny_unet()
    bb = DiffusersBackbone.from_pretrained(save_pipeline(tmp_path, unet))
    ref = DDIMScheduler(beta_schedule="linear", clip_sample=False)
    ref.set_timesteps(10)
    x = _x()
    with torch.no_grad():
        for t in ref.timesteps:
            x = ref.step(unet(x, t).sample, t, x).prev_sample
    ours = ds.sample(bb, sampler="ddim", steps=10, spacing="leading", x_T=_x(), clip=False)
    torch.testing.assert_close(ours, x, rtol=1e-4, atol=1e-4)


def test_bare_folder_and_single_file(tmp_path) -> None:
    unet = tiny_unet()
    unet.save_pretrained(tmp_path / "bare")
    bare = DiffusersBackbone.from_pretrained(tmp_path / "bare")
    assert bare.schedule is None
    with pytest.raises(ValueError, match="no schedule"):
        ds.sample(bare, steps=2, shape=(1, 2, 8, 8), seed=0)
    weights = tmp_path / "bare" / "diffusion_pytorch_model.safetensors"
    single = DiffusersBackbone.from_pretrained(weights, config=tmp_path / "bare" / "config.json")
    x, t = _x(), torch.tensor([0.5, 0.2, 0.9], dtype=torch.float64)
    s = ds.SCHEDULES.get("linear")()
    torch.testing.assert_close(single.eps(x, t, s), bare.eps(x, t, s))
    lone = tmp_path / "lone.safetensors"
    lone.write_bytes(weights.read_bytes())
    with pytest.raises(ModelLoadError, match="needs its model config"):
        DiffusersBackbone.from_pretrained(lone)


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_prediction_types_agree_with_diffusers_conversion(tmp_path, prediction_type: str) -> None:
    unet = tiny_unet()
    bb = DiffusersBackbone.from_pretrained(save_pipeline(tmp_path, unet, prediction_type=prediction_type))
    assert bb.prediction_type == prediction_type
    ref = DDIMScheduler(beta_schedule="linear", prediction_type=prediction_type, clip_sample=False)
    ref.set_timesteps(10)
    ref.alphas_cumprod = bb.schedule.alphas_cumprod.clone()
    x = _x().double()  # float64 outside the network: the conversions are compared, not float32 rounding
    for t in (900, 400, 0):
        with torch.no_grad():
            x0_diffusers = ref.step(unet(x.float(), t).sample.double(), t, x).pred_original_sample
        tt = bb.schedule.index_to_t(torch.full((3,), t))
        eps = bb.eps(x, tt, bb.schedule)
        a = bb.schedule.alpha_bar(tt)[:, None, None, None]
        torch.testing.assert_close((x - (1 - a).sqrt() * eps) / a.sqrt(), x0_diffusers, rtol=1e-9, atol=1e-9)


def test_class_conditional_unet(tmp_path) -> None:
    unet = tiny_unet(num_class_embeds=4)
    save_pipeline(tmp_path, unet)
    (tmp_path / "diffsampler.json").write_text(json.dumps({"null_class_label": 3}))
    bb = DiffusersBackbone.from_pretrained(tmp_path)
    assert bb.num_classes == 3 and bb.null_class_label == 3
    x, idx = _x(), torch.tensor([10, 10, 10])
    t = bb.schedule.index_to_t(idx)
    with torch.no_grad():
        for labels, used in (
            (torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2])),
            (2, torch.tensor([2, 2, 2])),
            (None, torch.tensor([3, 3, 3])),
        ):
            torch.testing.assert_close(
                bb.eps(x, t, bb.schedule, class_labels=labels), unet(x, idx, class_labels=used).sample
            )
    with pytest.raises(ValueError, match=r"class_labels must lie in \[0, 3\) \(or the null label 3\), got \[7\]"):
        bb.eps(x, t, bb.schedule, class_labels=7)
    bb.null_class_label = None
    with pytest.raises(ValueError, match="this model is class-conditional: pass class_labels"):
        bb.eps(x, t, bb.schedule)
    plain = DiffusersBackbone(tiny_unet(), bb.schedule)
    with pytest.raises(ValueError, match="not class-conditional"):
        plain.eps(x, t, bb.schedule, class_labels=1)


def test_condition_unet_takes_encoder_states(tmp_path) -> None:
    unet = tiny_condition_unet()
    bb = DiffusersBackbone.from_pretrained(save_pipeline(tmp_path, unet))
    x, ctx = _x(), torch.randn(3, 5, 6)
    t = bb.schedule.index_to_t(torch.tensor([100, 100, 100]))
    with torch.no_grad():
        torch.testing.assert_close(
            bb.eps(x, t, bb.schedule, encoder_hidden_states=ctx),
            unet(x, torch.full((3,), 100.0), encoder_hidden_states=ctx).sample,
        )
    out = ds.sample(bb, sampler="ddim", steps=3, x_T=x, cond={"encoder_hidden_states": ctx})
    assert out.shape == x.shape and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="needs encoder_hidden_states"):
        bb.eps(x, t, bb.schedule)


def test_loading_errors(tmp_path) -> None:
    unet = tiny_unet()
    save_pipeline(tmp_path / "p", unet)
    weights = tmp_path / "p" / "unet" / "diffusion_pytorch_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="cannot read safetensors file .*diffusion_pytorch_model.safetensors"):
        DiffusersBackbone.from_pretrained(tmp_path / "p")
    weights.write_bytes(b"\x00" * 7)
    with pytest.raises(ModelLoadError, match="cannot read safetensors file"):
        DiffusersBackbone.from_pretrained(tmp_path / "p")
    with pytest.raises(ModelLoadError, match="not found: not a file, a folder, or a hub id"):
        DiffusersBackbone.from_pretrained(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="holds no diffusers model"):
        DiffusersBackbone.from_pretrained(tmp_path / "empty")


def test_pickle_needs_permission(tmp_path) -> None:
    unet = tiny_unet()
    folder = tmp_path / "pickled"
    unet.save_pretrained(folder, safe_serialization=False)
    assert (folder / "diffusion_pytorch_model.bin").is_file()
    with pytest.raises(ModelLoadError, match="pickle checkpoint, which can run code.*allow_pickle=True"):
        DiffusersBackbone.from_pretrained(folder)
    ckpt = tmp_path / "model.ckpt"
    torch.save(unet.state_dict(), ckpt)
    with pytest.raises(ModelLoadError, match="model.ckpt is a pickle checkpoint"):
        DiffusersBackbone.from_pretrained(ckpt, config=folder / "config.json")
    loaded = DiffusersBackbone.from_pretrained(folder, allow_pickle=True)
    x, t = _x(), torch.tensor([0.3, 0.3, 0.3], dtype=torch.float64)
    s = ds.SCHEDULES.get("linear")()
    with torch.no_grad():
        torch.testing.assert_close(loaded.eps(x, t, s), unet(x, s.model_time(t).float()).sample)


def test_hub_id_loads_from_the_local_cache(tmp_path) -> None:
    """A hub id goes through huggingface_hub's cache: offline, a cached snapshot is used as is."""
    snap = tmp_path / "hub" / "models--someone--tiny-unet" / "snapshots" / "0123456789abcdef"
    save_pipeline(snap, tiny_unet())
    (snap / "model_index.json").write_text("{}")
    refs = tmp_path / "hub" / "models--someone--tiny-unet" / "refs"
    refs.mkdir()
    (refs / "main").write_text("0123456789abcdef")
    code = (
        "from diffsampler.backbones import DiffusersBackbone as D; b = D.from_pretrained('someone/tiny-unet'); "
        "print(b.sample_shape)\n"
        "try:\n    D.from_pretrained('someone/absent')\nexcept Exception as e: print(type(e).__name__, e)"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "(2, 8, 8)" in r.stdout and "ModelLoadError cannot get 'someone/absent'" in r.stdout


def test_cfg_with_text_style_conditioning(tmp_path) -> None:
    """CFG on a UNet2DConditionModel: one doubled batch of [context; negative context]."""
    from diffsampler.guidance import CFG

    unet = tiny_condition_unet()
    bb = DiffusersBackbone.from_pretrained(save_pipeline(tmp_path, unet))
    x, ctx, neg = _x(), torch.randn(3, 5, 6), torch.zeros(1, 5, 6)
    t = bb.schedule.index_to_t(torch.tensor([300, 300, 300]))
    guided = CFG(scale=2.5)(lambda xx, tt, **c: bb.eps(xx, tt, bb.schedule, **c), bb.schedule, bb)
    got = guided(x, t, encoder_hidden_states=ctx, negative_encoder_hidden_states=neg)
    with torch.no_grad():
        e_c = unet(x, torch.full((3,), 300.0), encoder_hidden_states=ctx).sample
        e_u = unet(x, torch.full((3,), 300.0), encoder_hidden_states=neg.expand(3, 5, 6)).sample
    torch.testing.assert_close(got, e_u + 2.5 * (e_c - e_u), rtol=1e-4, atol=1e-5)
    r = ds.sample(
        bb,
        sampler="ddim",
        steps=3,
        x_T=x,
        guidance=CFG(scale=2.0),
        full_output=True,
        cond={"encoder_hidden_states": ctx, "negative_encoder_hidden_states": neg},
    )
    assert r.nfe == 6 and torch.isfinite(r.samples).all()
    with pytest.raises(ValueError, match="needs the unconditional half"):
        guided(x, t, encoder_hidden_states=ctx)
