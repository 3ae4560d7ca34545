"""Latent text-to-image pipelines: a tiny random Stable Diffusion pipeline, built offline, sampled by diffsampler
and by diffusers' own StableDiffusionPipeline on the same prompt, latents and scheduler."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from diffusers import (
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
)
from typer.testing import CliRunner

import diffsampler as ds
from diffsampler.backbones import DiffusersBackbone
from diffsampler.backbones.pipeline import TextToImage
from diffsampler.cli import app
from diffsampler.guidance import CFG

from .tiny_pipelines import tiny_sd3_pipeline, tiny_sd_pipeline, tiny_sdxl_pipeline

PROMPTS = ["a photo of 2 cats", "a dog, 3"]


@pytest.fixture(scope="module")
def sd(tmp_path_factory) -> Path:
    """A Stable Diffusion 1.x-layout pipeline folder with tiny random components (VAE factor 2)."""
    return tiny_sd_pipeline(tmp_path_factory.mktemp("pipelines") / "sd")


@pytest.fixture(scope="module")
def pipe(sd: Path) -> StableDiffusionPipeline:
    p = StableDiffusionPipeline.from_pretrained(sd)
    p.set_progress_bar_config(disable=True)
    return p


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def test_loads_as_a_text_to_image_backbone(sd: Path, pipe) -> None:
    bb = DiffusersBackbone.from_pretrained(sd)
    assert isinstance(bb, TextToImage) and bb.factor == 2 and bb.sample_shape == (4, 8, 8)
    assert bb.resize(24, 32).sample_shape == (4, 12, 16)
    cond = bb.encode_prompt(PROMPTS, "blurry")
    ref, neg = pipe.encode_prompt(PROMPTS, torch.device("cpu"), 1, True, ["blurry"] * 2)
    torch.testing.assert_close(cond["encoder_hidden_states"], ref, rtol=0, atol=0)
    torch.testing.assert_close(cond["negative_encoder_hidden_states"], neg, rtol=0, atol=0)
    assert not isinstance(DiffusersBackbone.from_pretrained(sd, text=False), TextToImage)


# diffusers' Euler with trailing spacing starts from σ_max·z where the exact marginal, and ours, is √(1+σ_max²)·z
# (in σ's coordinates): its x_T is ours scaled by σ_max/√(1+σ_max²)
CASES = {
    "ddim": (
        lambda c: c,
        dict(sampler="ddim", spacing="leading", spacing_options={"steps_offset": 1}, set_alpha_to_one=False),
    ),
    "dpm-solver++": (
        lambda c: DPMSolverMultistepScheduler.from_config(c, timestep_spacing="trailing"),
        dict(sampler="dpm-solver++", spacing="trailing"),
    ),
    "euler": (
        lambda c: EulerDiscreteScheduler.from_config(c, timestep_spacing="trailing"),
        dict(sampler="euler", spacing="trailing"),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_latents_and_images_equal_the_diffusers_pipeline(sd: Path, pipe, name: str) -> None:
    make, ours = CASES[name]
    original = pipe.scheduler
    pipe.scheduler = make(original.config) if name != "ddim" else original
    bb = DiffusersBackbone.from_pretrained(sd).resize(16, 16)
    lat = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    x_T = lat
    if name == "euler":
        s_max = pipe.scheduler.init_noise_sigma.item()
        x_T = lat * s_max / (1 + s_max**2) ** 0.5
    kw = dict(
        negative_prompt=["blurry"] * 2, num_inference_steps=5, guidance_scale=3.0, height=16, width=16, latents=lat
    )
    try:
        ref = pipe(PROMPTS, output_type="latent", **kw).images
        img = pipe(PROMPTS, output_type="pt", **kw).images
    finally:
        pipe.scheduler = original
    got = ds.sample(bb, steps=5, x_T=x_T, guidance=CFG(scale=3.0), cond=bb.encode_prompt(PROMPTS, "blurry"), **ours)
    assert _rel(got, ref) < 1e-4
    assert _rel((bb.decode(got) / 2 + 0.5).clamp(0, 1), img) < 1e-4


runner = CliRunner()


def test_cli_writes_the_images(sd: Path, tmp_path: Path) -> None:
    out = tmp_path / "cats.png"
    r = runner.invoke(
        app,
        [
            "sample",
            "--model",
            str(sd),
            "--prompt",
            "a photo of 2 cats",
            "--negative-prompt",
            "dog",
            "--steps",
            "3",
            "--n",
            "2",
            "--height",
            "16",
            "--width",
            "24",
            "--out",
            str(out),
            "--save-trajectory",
            str(tmp_path / "path.png"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "prompt 'a photo of 2 cats'" in r.output and "NFE 6 per sample" in r.output
    from PIL import Image

    with Image.open(out) as im:
        assert im.mode == "RGB" and im.size[1] >= 16
    with Image.open(tmp_path / "path.png") as im:  # the decoded x̂_0 of every step, not latents
        assert im.mode == "RGB" and im.size[1] >= 2 * 16
    folder = tmp_path / "each"
    r = runner.invoke(
        app,
        [
            "sample",
            "--model",
            str(sd),
            "--prompt",
            "a cat",
            "--scale",
            "1",
            "--steps",
            "2",
            "--n",
            "2",
            "--out",
            str(folder),
        ],
    )
    assert r.exit_code == 0 and "NFE 2 per sample" in r.output and len(list(folder.glob("*.png"))) == 2


def test_cli_bad_input_is_one_line(sd: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(sd, broken)
    shutil.rmtree(broken / "vae")
    cases = [
        (
            ["--model", str(sd), "--prompt", "a cat", "--height", "15"],
            "--height/--width: height 15 is not a positive multiple of the VAE factor 2",
        ),
        (["--model", str(sd)], "is a text-to-image pipeline: pass --prompt"),
        (["--model", "digits", "--prompt", "a cat"], "--prompt is for text-to-image pipelines"),
        (["--model", str(broken), "--prompt", "a cat"], "lacks vae: a text-to-image pipeline needs"),
    ]
    for args, message in cases:
        out = tmp_path / "never.png"
        r = runner.invoke(app, ["sample", *args, "--steps", "2", "--n", "1", "--out", str(out)])
        assert r.exit_code == 2 and message in r.output and len(r.output.strip().splitlines()) == 1, r.output
        assert not out.exists()


@pytest.fixture(scope="module")
def sd3(tmp_path_factory) -> Path:
    return tiny_sd3_pipeline(tmp_path_factory.mktemp("sd3") / "sd3", text_encoders=False)


def _sd3_embeddings() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "encoder_hidden_states": torch.randn(2, 6, 32, generator=g),
        "negative_encoder_hidden_states": torch.randn(2, 6, 32, generator=g),
        "pooled_projections": torch.randn(2, 16, generator=g),
        "negative_pooled_projections": torch.randn(2, 16, generator=g),
    }


@pytest.mark.parametrize("sampler", ["ddim", "euler"])
def test_sd3_flow_transformer_equals_the_diffusers_pipeline(sd3: Path, sampler: str) -> None:
    """An SD3-layout pipeline (flow-matching transformer, shift 3) on precomputed prompt embeddings: latents and
    images equal StableDiffusion3Pipeline's. DDIM and Euler in σ are both its flow Euler on a rectified flow."""
    from diffusers import StableDiffusion3Pipeline

    none = {
        k: None
        for k in (
            "text_encoder",
            "tokenizer",
            "text_encoder_2",
            "tokenizer_2",
            "text_encoder_3",
            "tokenizer_3",
            "image_encoder",
            "feature_extractor",
        )
    }
    pipe = StableDiffusion3Pipeline.from_pretrained(sd3, **none)
    pipe.set_progress_bar_config(disable=True)
    c = _sd3_embeddings()
    lat = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    kw = dict(
        prompt_embeds=c["encoder_hidden_states"],
        negative_prompt_embeds=c["negative_encoder_hidden_states"],
        pooled_prompt_embeds=c["pooled_projections"],
        negative_pooled_prompt_embeds=c["negative_pooled_projections"],
        num_inference_steps=5,
        guidance_scale=3.0,
        height=16,
        width=16,
        latents=lat,
    )
    ref, img = pipe(output_type="latent", **kw).images, pipe(output_type="pt", **kw).images
    bb = DiffusersBackbone.from_pretrained(sd3).resize(16, 16)
    assert isinstance(bb, TextToImage) and bb.prediction_type == "flow" and bb.sample_shape == (4, 8, 8)
    assert isinstance(bb.schedule, ds.RectifiedFlow) and bb.schedule.shift == 3.0
    got = ds.sample(
        bb, sampler=sampler, spacing="flow", steps=5, x_T=lat, guidance=CFG(scale=3.0), cond=c, full_output=True
    )
    assert got.nfe == 10 and got.grid[0].item() == 1.0  # from zero SNR, CFG's two halves a step
    assert _rel(got.samples, ref) < 1e-4
    assert _rel((bb.decode(got.samples) / 2 + 0.5).clamp(0, 1), img) < 1e-4


def test_sd3_needs_its_embeddings(sd3: Path) -> None:
    bb = DiffusersBackbone.from_pretrained(sd3)
    with pytest.raises(ValueError, match="has no text encoders .* pass precomputed embeddings"):
        bb.encode_prompt("a cat")
    c = _sd3_embeddings()
    del c["negative_pooled_projections"]
    with pytest.raises(ValueError, match="cfg with pooled_projections needs the unconditional half"):
        ds.sample(bb, steps=2, shape=(2, *bb.sample_shape), seed=0, guidance=CFG(scale=2.0), cond=c)
    del c["pooled_projections"]
    with pytest.raises(ValueError, match="SD3Transformer2DModel needs pooled_projections in cond"):
        ds.sample(bb, steps=2, shape=(2, *bb.sample_shape), seed=0, cond=c)


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory) -> Path:
    return tiny_sdxl_pipeline(tmp_path_factory.mktemp("sdxl") / "sdxl")


@pytest.mark.parametrize("negative", [None, "blurry"])
@pytest.mark.parametrize("name", ["ddim", "dpm-solver++"])
def test_sdxl_equals_the_diffusers_pipeline(sdxl: Path, name: str, negative: str | None) -> None:
    """SDXL: both text encoders, the pooled text_embeds and size time_ids, zeros for no negative prompt
    (force_zeros_for_empty_prompt): latents and images equal StableDiffusionXLPipeline's."""
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(sdxl)
    pipe.set_progress_bar_config(disable=True)
    make, ours = CASES[name]
    if name != "ddim":  # the folder's own scheduler is DDIM
        pipe.scheduler = make(pipe.scheduler.config)
    lat = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    kw = dict(
        negative_prompt=None if negative is None else [negative] * 2,
        num_inference_steps=5,
        guidance_scale=3.0,
        height=16,
        width=16,
        latents=lat,
    )
    ref, img = pipe(PROMPTS, output_type="latent", **kw).images, pipe(PROMPTS, output_type="pt", **kw).images
    bb = DiffusersBackbone.from_pretrained(sdxl).resize(16, 16)
    cond = bb.encode_prompt(PROMPTS, negative)
    assert set(cond) == {
        "encoder_hidden_states",
        "text_embeds",
        "time_ids",
        "negative_encoder_hidden_states",
        "negative_text_embeds",
        "negative_time_ids",
    }
    assert cond["time_ids"].tolist() == [[16, 16, 0, 0, 16, 16]] * 2
    assert (negative is None) == bool((cond["negative_encoder_hidden_states"] == 0).all())
    got = ds.sample(bb, steps=5, x_T=lat, guidance=CFG(scale=3.0), cond=cond, **ours)
    assert _rel(got, ref) < 1e-4
    assert _rel((bb.decode(got) / 2 + 0.5).clamp(0, 1), img) < 1e-4


def test_sdxl_from_the_command_line(sdxl: Path, tmp_path: Path) -> None:
    out = tmp_path / "xl.png"
    r = runner.invoke(
        app,
        [
            "sample",
            "--model",
            str(sdxl),
            "--prompt",
            "a cat",
            "--steps",
            "2",
            "--n",
            "2",
            "--height",
            "16",
            "--width",
            "16",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0 and "NFE 4 per sample" in r.output, r.output
    assert out.stat().st_size > 0


@pytest.mark.parametrize("rescale", [0.0, 0.7])
def test_zero_terminal_snr_v_model_equals_the_diffusers_pipeline(sd: Path, tmp_path: Path, rescale: float) -> None:
    """A v-prediction pipeline with rescale_betas_zero_snr (Lin et al. 2024): trailing from zero SNR by default, CFG
    rescale in the model's own v (diffusers' guidance_rescale), equal to StableDiffusionPipeline's."""
    from diffusers import DDIMScheduler

    folder = tmp_path / "zsnr"
    shutil.copytree(sd, folder)
    cfg = DDIMScheduler.from_pretrained(sd / "scheduler").config
    DDIMScheduler.from_config(
        cfg, rescale_betas_zero_snr=True, prediction_type="v_prediction", timestep_spacing="trailing"
    ).save_pretrained(folder / "scheduler")
    pipe = StableDiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    lat = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    kw = dict(
        negative_prompt=["blurry"] * 2,
        num_inference_steps=5,
        guidance_scale=3.0,
        guidance_rescale=rescale,
        height=16,
        width=16,
        latents=lat,
    )
    ref, img = pipe(PROMPTS, output_type="latent", **kw).images, pipe(PROMPTS, output_type="pt", **kw).images
    bb = DiffusersBackbone.from_pretrained(folder).resize(16, 16)
    assert bb.prediction_type == "v_prediction" and bb.schedule.alpha_bar(1.0).item() == 0
    got = ds.sample(
        bb,
        sampler="ddim",
        steps=5,
        x_T=lat,
        guidance=CFG(scale=3.0, rescale=rescale),
        cond=bb.encode_prompt(PROMPTS, "blurry"),
        set_alpha_to_one=False,
        full_output=True,
    )
    assert got.grid[0].item() == 1.0
    assert _rel(got.samples, ref) < 1e-4
    assert _rel((bb.decode(got.samples) / 2 + 0.5).clamp(0, 1), img) < 1e-4
    from diffsampler.cli import SampleArgs, _build_guidance

    assert _build_guidance(SampleArgs(model=str(folder), prompt="a cat"), None, bb.schedule).rescale == 0.7
    assert (
        _build_guidance(
            SampleArgs(model=str(sd), prompt="a cat"), None, DiffusersBackbone.from_pretrained(sd).schedule
        ).rescale
        == 0.0
    )


def test_model_cpu_offload_gives_the_same_images(sd: Path, tmp_path: Path) -> None:
    """With accelerate's offload hooks (here onto the CPU itself: the plumbing, not the memory) the images are
    the same; --offload on the command line, and a one-line refusal for a model that is not a pipeline."""
    lat = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))

    def images(bb: TextToImage) -> torch.Tensor:
        z = ds.sample(bb, steps=3, x_T=lat, guidance=CFG(scale=3.0), cond=bb.encode_prompt(PROMPTS, "blurry"))
        return bb.decode(z)

    plain = images(DiffusersBackbone.from_pretrained(sd).resize(16, 16))
    offloaded = DiffusersBackbone.from_pretrained(sd).resize(16, 16).enable_model_cpu_offload("cpu")
    assert offloaded.device == torch.device("cpu") and hasattr(offloaded.unet, "_hf_hook")
    torch.testing.assert_close(images(offloaded), plain, rtol=0, atol=0)
    out = tmp_path / "off.png"
    r = runner.invoke(
        app,
        [
            "sample",
            "--model",
            str(sd),
            "--prompt",
            "a cat",
            "--steps",
            "2",
            "--n",
            "1",
            "--device",
            "cpu",
            "--offload",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0 and out.stat().st_size > 0, r.output
    r = runner.invoke(app, ["sample", "--offload", "--steps", "2", "--n", "1", "--out", str(tmp_path / "no.png")])
    assert r.exit_code == 2 and "--offload is for text-to-image pipelines; 'digits' is not one" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "no.png").exists()


def test_model_spacing_is_the_scheduler_configs(sd: Path) -> None:
    """spacing='model' walks the config's timestep_spacing (SD 1.x: leading, steps_offset 1), as diffusers does."""
    bb = DiffusersBackbone.from_pretrained(sd)
    assert bb.schedule.config_spacing == ("leading", {"steps_offset": 1})
    torch.testing.assert_close(
        ds.sampling.time_grid("ddim", bb.schedule, 7, "model"),
        ds.make_grid(bb.schedule, 7, "leading", steps_offset=1),
        rtol=0,
        atol=0,
    )
    with pytest.raises(ValueError, match="spacing 'model' needs a schedule read from a diffusers scheduler config"):
        ds.make_grid(ds.SCHEDULES.get("linear")(), 5, "model")


@pytest.mark.parametrize("negative", [None, "blurry"])
def test_sd3_prompts_through_its_three_text_encoders(tmp_path: Path, negative: str | None) -> None:
    """SD3 with its text encoders (two CLIPs and a T5, tiny): encode_prompt equals StableDiffusion3Pipeline's,
    and so do the latents and images from the prompt."""
    from diffusers import StableDiffusion3Pipeline

    folder = tiny_sd3_pipeline(tmp_path / "sd3-text")
    pipe = StableDiffusion3Pipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    bb = DiffusersBackbone.from_pretrained(folder).resize(16, 16)
    cond = bb.encode_prompt(PROMPTS, negative)
    with torch.no_grad():  # as the pipeline calls it (with grad on, attention takes another kernel: 1e-5 apart)
        ref = pipe.encode_prompt(PROMPTS, PROMPTS, PROMPTS, negative_prompt=negative, do_classifier_free_guidance=True)
    for key, theirs in zip(
        (
            "encoder_hidden_states",
            "negative_encoder_hidden_states",
            "pooled_projections",
            "negative_pooled_projections",
        ),
        ref,
    ):
        # one negative prompt is encoded once here and twice there: kernels of another batch size round the last
        # bits differently (2⁻²³ relative, a few times over two small encoders)
        eps = 8 * torch.finfo(torch.float32).eps
        torch.testing.assert_close(cond[key], theirs, rtol=eps, atol=eps * theirs.abs().max().item())
    lat = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    kw = dict(negative_prompt=negative, num_inference_steps=4, guidance_scale=3.0, height=16, width=16, latents=lat)
    want = pipe(PROMPTS, output_type="latent", **kw).images
    got = ds.sample(bb, sampler="euler", spacing="flow", steps=4, x_T=lat, guidance=CFG(scale=3.0), cond=cond)
    assert _rel(got, want) < 1e-4
    r = runner.invoke(
        app,
        [
            "sample",
            "--model",
            str(folder),
            "--prompt",
            "a cat",
            "--steps",
            "2",
            "--n",
            "1",
            "--out",
            str(tmp_path / "sd3.png"),
        ],
    )
    assert r.exit_code == 0 and (tmp_path / "sd3.png").stat().st_size > 0, r.output
