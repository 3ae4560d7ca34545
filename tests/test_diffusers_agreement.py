"""DDPM, DDIM and DPM-Solver++(2M) against diffusers' schedulers on the same ε-model, x_T, betas and timesteps.

diffusers keeps ᾱ in float32; for the float64 comparisons its ``alphas_cumprod`` is replaced by
ours, so what is compared is the update rule, to 1e-5 (it agrees to ~1e-12).
"""

from __future__ import annotations

from typing import Iterator

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

import diffsampler as ds

F64 = torch.float64
B, D = 4, 6


def _noises(n: int, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, D, generator=g, dtype=F64) for _ in range(n)]


def _feed(noises: list[torch.Tensor]) -> "callable":
    it: Iterator[torch.Tensor] = iter(noises)
    return lambda like: next(it)


def _x_T(seed: int = 0) -> torch.Tensor:
    return torch.randn(B, D, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("steps", [10, 50])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_matches_diffusers(tanh_eps, spacing: str, steps: int, eta: float) -> None:
    sched = ds.SCHEDULES.get("linear")()
    ref = DDIMScheduler(beta_schedule="linear", clip_sample=False, timestep_spacing=spacing, set_alpha_to_one=True)
    ref.alphas_cumprod = sched.alphas_cumprod.clone()
    ref.final_alpha_cumprod = torch.tensor(1.0, dtype=F64)
    ref.set_timesteps(steps)
    noises = _noises(steps)
    x = _x_T()
    ts = ref.timesteps.tolist()
    for k, t in enumerate(ts):
        if spacing == "linspace" and k + 1 < len(ts):
            # diffusers' DDIM steps to t − T//N, not to the next linspace timestep
            # (huggingface/diffusers#12633); pick N per step so that it lands on the next one.
            gap = t - ts[k + 1]
            ref.num_inference_steps = next(n for n in range(1, 1001) if 1000 // n == gap)
        x = ref.step(
            tanh_eps(x, torch.tensor(t)), t, x, eta=eta, variance_noise=noises[k] if eta > 0 else None
        ).prev_sample
    ours = ds.sample(
        tanh_eps,
        schedule=sched,
        sampler="ddim",
        steps=steps,
        spacing=spacing,
        x_T=_x_T(),
        eta=eta,
        noise_sampler=_feed(noises),
    )
    torch.testing.assert_close(ours, x, rtol=0, atol=1e-5)
    assert (ours - x).abs().max() < 1e-10


def test_ddim_set_alpha_to_one_false_matches_diffusers(tanh_eps) -> None:
    sched = ds.SCHEDULES.get("scaled-linear")()
    ref = DDIMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    ref.alphas_cumprod = sched.alphas_cumprod.clone()
    ref.final_alpha_cumprod = ref.alphas_cumprod[0]
    ref.set_timesteps(20)
    x = _x_T()
    for t in ref.timesteps:
        x = ref.step(tanh_eps(x, t), t, x).prev_sample
    ours = ds.sample(
        tanh_eps,
        schedule=sched,
        sampler="ddim",
        steps=20,
        spacing="leading",
        spacing_options={"steps_offset": 1},
        x_T=_x_T(),
        set_alpha_to_one=False,
    )
    torch.testing.assert_close(ours, x, rtol=0, atol=1e-10)


def test_ddim_float32_defaults_agree(tanh_eps) -> None:
    """Untouched diffusers (float32 ᾱ) and float32 samples: the schedules agree too."""
    ref = DDIMScheduler(beta_schedule="linear", clip_sample=False)
    ref.set_timesteps(50)
    x0 = _x_T().float()
    x = x0
    for t in ref.timesteps:
        x = ref.step(tanh_eps(x, t), t, x).prev_sample
    ours = ds.sample(tanh_eps, schedule="linear", sampler="ddim", steps=50, spacing="leading", x_T=x0)
    torch.testing.assert_close(ours, x, rtol=1e-5, atol=1e-5)  # float32 rounding of values up to ~300


# ``large`` only where the grid ends at index 0: elsewhere diffusers adds β-sized noise on the
# last step (its test is ``t > 0``), while ddpm adds no noise on the last step by design.
@pytest.mark.parametrize(
    "spacing,variance", [("leading", "small"), ("trailing", "small"), ("linspace", "small"), ("leading", "large")]
)
@pytest.mark.parametrize("steps", [10, 50])
def test_ddpm_matches_diffusers(tanh_eps, spacing: str, steps: int, variance: str) -> None:
    sched = ds.SCHEDULES.get("linear")()
    ref = DDPMScheduler(
        beta_schedule="linear", clip_sample=False, timestep_spacing=spacing, variance_type=f"fixed_{variance}"
    )
    ref.alphas_cumprod = sched.alphas_cumprod.clone()
    ref.one = torch.tensor(1.0, dtype=F64)
    ref.set_timesteps(steps)
    g = torch.Generator().manual_seed(7)
    x = _x_T()
    for t in ref.timesteps:
        x = ref.step(tanh_eps(x, t), t, x, generator=g).prev_sample
    ours = ds.sample(
        tanh_eps,
        schedule=sched,
        sampler="ddpm",
        steps=steps,
        spacing=spacing,
        x_T=_x_T(),
        variance=variance,
        generator=torch.Generator().manual_seed(7),
    )
    torch.testing.assert_close(ours, x, rtol=0, atol=1e-5)


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("steps", [10, 20])
@pytest.mark.parametrize("final", ["zero", "sigma_min"])
def test_dpm_solver_pp_matches_diffusers(tanh_eps, steps: int, final: str, order: int) -> None:
    """DPM-Solver++(1M, 2M, 3M) with diffusers' warm-up and lower-order-final rules, on float64 σ.

    diffusers' step upcasts the sample to float32, so the agreement is float32's: ≤ 1e-6 of the output
    scale over 20 steps (measured ≤ 5e-7)."""
    sched = ds.SCHEDULES.get("linear")()
    ref = DPMSolverMultistepScheduler(
        beta_schedule="linear", algorithm_type="dpmsolver++", solver_order=order, final_sigmas_type=final
    )
    ref.set_timesteps(steps)
    sig = ((1 - sched.alphas_cumprod) / sched.alphas_cumprod).sqrt()
    end = 0.0 if final == "zero" else sig[0].item()
    ref.sigmas = torch.cat([sig[ref.timesteps.long()], torch.tensor([end], dtype=F64)])
    x = _x_T()
    for t in ref.timesteps:
        x = ref.step(tanh_eps(x, t), t, x).prev_sample
    grid = torch.cat(
        [sched.index_to_t(ref.timesteps), torch.tensor([0.0 if final == "zero" else sched.t_min], dtype=F64)]
    )
    ours = ds.sample(tanh_eps, schedule=sched, sampler="dpm-solver++", grid=grid, x_T=_x_T(), order=order)
    assert (ours - x).abs().max() <= 1e-6 * x.abs().max()


def test_dpm_solver_pp_order_must_be_1_to_3(tanh_eps) -> None:
    with pytest.raises(ValueError, match="order must be 1, 2 or 3, got 4"):
        ds.sample(tanh_eps, schedule="linear", sampler="dpm-solver++", steps=5, shape=(2, 6), seed=0, order=4)
