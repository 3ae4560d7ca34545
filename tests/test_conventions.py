"""Where two codebases differ in convention, both are offered and each is reproduced exactly.

- DDIM with x̂_0 clipping: diffusers re-noises with the network's own ε (its default), guided-diffusion
  with ε re-derived from the clipped x̂_0 (diffusers' ``use_clipped_model_output=True``, our default).
- DDPM: the classic tutorial loop adds σ_t·z on its last step too (``final_noise=True``).
"""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDIMPipeline, DDIMScheduler, DDPMScheduler

import diffsampler as ds
from diffsampler.backbones import DiffusersBackbone

from .test_diffusers_backbone import save_pipeline, tiny_unet

F64 = torch.float64


@pytest.fixture(scope="module")
def clipping_pipeline(tmp_path_factory):
    """A pipeline folder whose scheduler says clip_sample=True, and its UNet."""
    folder = tmp_path_factory.mktemp("clip")
    unet = tiny_unet()
    save_pipeline(folder, unet, clip_sample=True)
    DDIMPipeline(unet=unet, scheduler=DDPMScheduler.from_pretrained(folder / "scheduler")).save_pretrained(folder)
    return folder, unet


def test_ddim_reproduces_diffusers_ddim_pipeline(clipping_pipeline) -> None:
    """diffusers' DDIMPipeline on the same folder and noise: equal with use_clipped_model_output=False.

    Run in float64 with the pipeline's scheduler holding our float64 ᾱ, so that what is compared is the
    loop, not float32 rounding (which the 1/√ᾱ of early steps amplifies to ~1e-5 at this output scale).
    """
    folder, _ = clipping_pipeline
    pipe = DDIMPipeline.from_pretrained(folder)
    pipe.unet.to(F64)
    pipe.set_progress_bar_config(disable=True)
    bb = DiffusersBackbone.from_pretrained(folder, dtype=F64)
    assert bb.clip == 1.0
    pipe.scheduler.alphas_cumprod = bb.schedule.alphas_cumprod.clone()
    pipe.scheduler.final_alpha_cumprod = torch.tensor(1.0, dtype=F64)
    images = pipe(
        batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=10, output_type="np"
    ).images  # (x/2 + 1/2) clamped to [0, 1], [B, H, W, C]
    x_T = torch.randn((2, 2, 8, 8), generator=torch.Generator().manual_seed(0), dtype=F64)  # as the pipeline draws

    def as_image(x: torch.Tensor):
        return (x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()

    ours = ds.sample(bb, sampler="ddim", steps=10, spacing="leading", x_T=x_T, use_clipped_model_output=False)
    assert abs(as_image(ours) - images).max() < 1e-9
    default = ds.sample(bb, sampler="ddim", steps=10, spacing="leading", x_T=x_T)
    assert abs(as_image(default) - images).max() > 1e-3, (
        "the two conventions differ on this model, so the comparison above can fail"
    )


@pytest.mark.parametrize("use_clipped", [False, True])
@pytest.mark.parametrize("eta", [0.0, 0.7])
def test_ddim_clipping_conventions_match_diffusers_scheduler(clipping_pipeline, use_clipped: bool, eta: float) -> None:
    """The scheduler loop in float64 on our ᾱ: both conventions to 1e-10, with the same injected noise."""
    folder, unet = clipping_pipeline
    bb = DiffusersBackbone.from_pretrained(folder)
    ref = DDIMScheduler(beta_schedule="linear", clip_sample=True, set_alpha_to_one=True)
    ref.alphas_cumprod = bb.schedule.alphas_cumprod.clone()
    ref.final_alpha_cumprod = torch.tensor(1.0, dtype=F64)
    ref.set_timesteps(10)
    g = torch.Generator().manual_seed(1)
    noises = [torch.randn(2, 2, 8, 8, generator=g, dtype=F64) for _ in range(10)]
    x_T = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(2), dtype=F64)

    def net(x, t):  # the UNet in float32, its output in float64: the same ε for both loops
        with torch.no_grad():
            return unet(x.float(), t).sample.double()

    x = x_T
    for k, t in enumerate(ref.timesteps):
        x = ref.step(
            net(x, t), t, x, eta=eta, use_clipped_model_output=use_clipped, variance_noise=noises[k]
        ).prev_sample
    feed = iter(noises)
    ours = ds.sample(
        lambda xx, tt: net(xx, tt),
        schedule=bb.schedule,
        sampler="ddim",
        steps=10,
        spacing="leading",
        x_T=x_T,
        clip=1.0,
        eta=eta,
        use_clipped_model_output=use_clipped,
        noise_sampler=lambda like: next(feed),
    )
    assert (ours - x).abs().max() < 1e-10


def _tutorial_loop(model, betas: torch.Tensor, x: torch.Tensor, noise) -> torch.Tensor:
    """The seed tutorial's ``p_sample_loop``: σ_t = √β_t and noise at every t, t = 0 included."""
    alphas = 1 - betas
    one_minus_alphas_bar_sqrt = (1 - torch.cumprod(alphas, 0)).sqrt()
    for t in reversed(range(len(betas))):
        eps_factor = (1 - alphas[t]) / one_minus_alphas_bar_sqrt[t]
        mean = (1 / alphas[t].sqrt()) * (x - eps_factor * model(x, torch.tensor([t])))
        x = mean + betas[t].sqrt() * noise(x)
    return x


def test_ddpm_final_noise_reproduces_the_tutorial_loop(tanh_eps) -> None:
    T = 100
    sched = ds.SCHEDULES.get("sigmoid")(num_train_timesteps=T, beta_start=1e-5, beta_end=5e-3)
    betas = torch.sigmoid(torch.linspace(-6, 6, T, dtype=F64)) * (5e-3 - 1e-5) + 1e-5  # the tutorial's schedule
    torch.testing.assert_close(sched.betas, betas, rtol=1e-12, atol=0)
    x_T = torch.randn(16, 6, generator=torch.Generator().manual_seed(0), dtype=F64)

    def model(x, t):
        return tanh_eps(x, torch.as_tensor(t, dtype=F64).expand(x.shape[0]))

    def stream():
        g = torch.Generator().manual_seed(1)
        return lambda like: torch.randn(like.shape, generator=g, dtype=F64)

    expected = _tutorial_loop(model, betas, x_T, stream())
    ours = ds.sample(
        model,
        schedule=sched,
        sampler="ddpm",
        steps=T,
        x_T=x_T,
        variance="large",
        final_noise=True,
        noise_sampler=stream(),
    )
    assert (ours - expected).abs().max() < 1e-10
    plain = ds.sample(model, schedule=sched, sampler="ddpm", steps=T, x_T=x_T, variance="large", noise_sampler=stream())
    last_sigma = math.sqrt(betas[0].item())  # the default leaves out only the last step's σ_1·z
    assert 0 < (plain - expected).abs().max() < 10 * last_sigma
