"""The k-diffusion samplers (euler, heun, dpm-2, …) against k-diffusion's sampling.py and diffusers' schedulers.

Same model (the exact ε of a Gaussian mixture, float64), same σ grid (float64), same injected noise.
k-diffusion then computes in float64 throughout: agreement to 1e-10 of the output scale. diffusers'
Euler schedulers upcast the sample to float32 inside ``step`` (12 steps of float32 rounding, ~1e-7
relative), so against them the bound is 1e-6 of the output scale.
"""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, HeunDiscreteScheduler

import diffsampler as ds

F64 = torch.float64
_linspace = torch.linspace
B, STEPS = 6, 12


@pytest.fixture(scope="module")
def setting():
    gm = ds.GaussianMixture(
        means=[[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]],
        weights=[0.5, 0.3, 0.2],
        variances=[[0.3, 0.5], [0.4, 0.2], [0.25, 0.25]],
    )
    sched = ds.SCHEDULES.get("linear")()
    x_T = torch.randn(B, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    return gm, sched, x_T


def _denoiser(gm, sched):
    """k-diffusion's model(y, σ·1) = x̂_0 for y = x/√ᾱ: the conversion every EDM-style wrapper makes."""

    def model(y, sigma):
        s = float(sigma.reshape(-1)[0])
        t = sched.t_from_sigma(s).clamp(0, 1).expand(y.shape[0])
        return y - s * gm.eps(y / math.sqrt(1 + s * s), t, sched)

    return model


def _noises(n: int, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, 2, generator=g, dtype=F64) for _ in range(n)]


def _close(ours: torch.Tensor, ref: torch.Tensor, rel: float = 1e-10) -> None:
    scale = ref.abs().max().item()
    assert (ours - ref).abs().max().item() <= rel * max(scale, 1.0), (ours - ref).abs().max()


CASES = [
    ("euler", "sample_euler", {}),
    ("euler", "sample_euler", {"s_churn": 2.0, "s_noise": 1.003}),
    ("euler-ancestral", "sample_euler_ancestral", {}),
    ("euler-ancestral", "sample_euler_ancestral", {"eta": 0.5, "s_noise": 0.9}),
    ("heun", "sample_heun", {}),
    ("heun", "sample_heun", {"s_churn": 4.0, "s_tmin": 0.05, "s_tmax": 10.0}),
    ("dpm-solver++-sde", "sample_dpmpp_2m_sde", {}),
    ("dpm-solver++-sde", "sample_dpmpp_2m_sde", {"eta": 0.5, "s_noise": 0.9, "solver_type": "heun"}),
    ("dpm-solver++-sde", "sample_dpmpp_3m_sde", {"order": 3}),
    ("dpm-solver++-sde", "sample_dpmpp_3m_sde", {"order": 3, "eta": 0.0}),
    ("lms", "sample_lms", {}),
    ("lms", "sample_lms", {"order": 2}),
    ("dpm-solver++-2s", "sample_dpmpp_2s_ancestral", {"eta": 0.0}),
    ("dpm-solver++-2s", "sample_dpmpp_2s_ancestral", {"eta": 1.0, "s_noise": 0.95}),
    ("dpm-2", "sample_dpm_2", {}),
    ("dpm-2", "sample_dpm_2", {"s_churn": 4.0, "s_tmin": 0.05, "s_tmax": 10.0}),
    ("dpm-2-ancestral", "sample_dpm_2_ancestral", {}),
    ("dpm-2-ancestral", "sample_dpm_2_ancestral", {"eta": 0.5, "s_noise": 0.9}),
]


@pytest.mark.parametrize("name,k_name,options", CASES)
def test_matches_k_diffusion(k_sampling, setting, monkeypatch, name, k_name, options) -> None:
    gm, sched, x_T = setting
    grid = ds.make_grid(sched, STEPS, "karras")
    sigmas = sched.sigma(grid)
    sigmas[-1] = 0.0
    noises = _noises(STEPS)
    feed = iter(noises)
    monkeypatch.setattr(torch, "randn_like", lambda like, **kw: next(feed))  # k-diffusion's noise, injected
    k_options = dict(options)
    if name == "dpm-solver++-sde":  # k-diffusion names the order in the function (2m, 3m), and would draw
        k_options.pop("order", None)  # its noise from a Brownian tree: the same noise is injected instead
        k_options["noise_sampler"] = lambda sigma, sigma_next: next(feed)
    ref = getattr(k_sampling, k_name)(
        _denoiser(gm, sched), x_T * math.sqrt(1 + sigmas[0].item() ** 2), sigmas, disable=True, **k_options
    )
    monkeypatch.undo()
    drawn = iter(noises)
    ours = ds.sample(
        gm,
        schedule=sched,
        sampler=name,
        grid=grid,
        x_T=x_T,
        noise_sampler=lambda like: next(drawn),
        full_output=True,
        **options,
    )
    _close(ours.samples, ref)
    assert ours.nfe == (2 * STEPS - 1 if name in ("heun", "dpm-solver++-2s", "dpm-2", "dpm-2-ancestral") else STEPS)


def test_lms_matches_diffusers(setting) -> None:
    from diffusers import LMSDiscreteScheduler

    gm, sched, x_T = setting
    ref = LMSDiscreteScheduler(beta_schedule="linear", timestep_spacing="trailing")
    ref.set_timesteps(STEPS)
    sig = ((1 - sched.alphas_cumprod) / sched.alphas_cumprod).sqrt()
    idx = ref.timesteps.round().long()
    ref.sigmas = torch.cat([sig[idx], torch.zeros(1, dtype=F64)])
    y = x_T * math.sqrt(1 + ref.sigmas[0].item() ** 2)
    for t in ref.timesteps:
        x_in = ref.scale_model_input(y, t)
        y = ref.step(gm.eps(x_in, sched.index_to_t(t.round()).expand(B), sched), t, y, order=4).prev_sample
    grid = torch.cat([sched.index_to_t(idx.double()), torch.zeros(1, dtype=F64)])
    _close(ds.sample(gm, schedule=sched, sampler="lms", grid=grid, x_T=x_T), y, rel=1e-6)


def _diffusers_loop(scheduler, gm, sched, x_T, noises, module, monkeypatch, steps=STEPS):
    """A diffusers scheduler loop on our float64 ᾱ and σ, with the injected noise."""
    scheduler.alphas_cumprod = sched.alphas_cumprod.clone()
    scheduler.set_timesteps(steps)
    sig = torch.as_tensor(((1 - sched.alphas_cumprod) / sched.alphas_cumprod).sqrt().numpy())
    idx = scheduler.timesteps.round().long()
    scheduler.sigmas = torch.cat([sig[idx], torch.zeros(1, dtype=F64)])
    feed = iter(noises)
    monkeypatch.setattr(module, "randn_tensor", lambda *a, **k: next(feed))
    y = x_T * math.sqrt(1 + scheduler.sigmas[0].item() ** 2)
    for t in scheduler.timesteps:
        x_in = scheduler.scale_model_input(y, t)
        eps = gm.eps(x_in, sched.index_to_t(t.round()).expand(B), sched)
        y = scheduler.step(eps, t, y).prev_sample
    monkeypatch.undo()
    return y, sched.index_to_t(idx.double())


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("name", ["euler", "euler-ancestral"])
def test_matches_diffusers_euler_schedulers(setting, monkeypatch, spacing, name) -> None:
    import diffusers.schedulers.scheduling_euler_ancestral_discrete as ea
    import diffusers.schedulers.scheduling_euler_discrete as eu

    gm, sched, x_T = setting
    cls, module = (EulerDiscreteScheduler, eu) if name == "euler" else (EulerAncestralDiscreteScheduler, ea)
    noises = _noises(STEPS)
    ref, starts = _diffusers_loop(
        cls(beta_schedule="linear", timestep_spacing=spacing), gm, sched, x_T, noises, module, monkeypatch
    )
    grid = torch.cat([starts, torch.zeros(1, dtype=F64)])
    drawn = iter(noises)
    ours = ds.sample(gm, schedule=sched, sampler=name, grid=grid, x_T=x_T, noise_sampler=lambda like: next(drawn))
    _close(ours, ref, rel=1e-6)  # diffusers computes the step in float32


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_matches_diffusers_heun(setting, monkeypatch, spacing) -> None:
    gm, sched, x_T = setting
    ref = HeunDiscreteScheduler(beta_schedule="linear", timestep_spacing=spacing)
    ref.alphas_cumprod = sched.alphas_cumprod.clone()
    ref.set_timesteps(STEPS)
    sig = ((1 - sched.alphas_cumprod) / sched.alphas_cumprod).sqrt()
    idx = ref.timesteps[::2].round().long()  # diffusers repeats every timestep but the first for the 2nd stage
    sigmas = torch.cat([sig[idx], torch.zeros(1, dtype=F64)])
    ref.sigmas = torch.cat([sigmas[:1], sigmas[1:-1].repeat_interleave(2), sigmas[-1:]])
    y = x_T * math.sqrt(1 + sigmas[0].item() ** 2)
    for t in ref.timesteps:
        s = ref.sigmas[ref.step_index if ref.step_index is not None else 0].item()
        x_in = ref.scale_model_input(y, t)
        eps = gm.eps(x_in, sched.t_from_sigma(s).expand(B), sched)
        y = ref.step(eps, t, y).prev_sample
    grid = torch.cat([sched.index_to_t(idx.double()), torch.zeros(1, dtype=F64)])
    ours = ds.sample(gm, schedule=sched, sampler="heun", grid=grid, x_T=x_T)
    _close(ours, y)


def test_euler_without_churn_is_ddim(setting) -> None:
    gm, sched, x_T = setting
    a = ds.sample(gm, schedule=sched, sampler="euler", steps=15, spacing="trailing", x_T=x_T)
    b = ds.sample(gm, schedule=sched, sampler="ddim", steps=15, spacing="trailing", x_T=x_T)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "options,message", [({"s_churn": -1.0}, "need s_churn ≥ 0"), ({"s_tmin": 2.0, "s_tmax": 1.0}, "s_tmin ≤ s_tmax")]
)
def test_bad_churn_options(setting, options, message) -> None:
    gm, sched, x_T = setting
    with pytest.raises(ValueError, match=message):
        ds.sample(gm, schedule=sched, sampler="heun", steps=4, x_T=x_T, **options)
    for name in ("euler-ancestral", "dpm-solver++-2s"):
        with pytest.raises(ValueError, match="eta must be ≥ 0"):
            ds.sample(gm, schedule=sched, sampler=name, steps=4, x_T=x_T, eta=-1.0)


@pytest.mark.parametrize(
    "options,message",
    [
        ({"order": 1}, "order must be 2 or 3, got 1"),
        ({"solver_type": "rk"}, "unknown solver_type 'rk'; known: midpoint, heun"),
        ({"eta": -0.1}, "eta must be ≥ 0"),
    ],
)
def test_bad_sde_options(setting, options, message) -> None:
    gm, sched, x_T = setting
    with pytest.raises(ValueError, match=message):
        ds.sample(gm, schedule=sched, sampler="dpm-solver++-sde", steps=4, x_T=x_T, **options)


@pytest.mark.parametrize("steps", [12, 10, 7])
@pytest.mark.parametrize("options", [{}, {"eta": 0.7, "s_noise": 0.9}])
def test_dpm_fast_matches_k_diffusion(k_sampling, setting, monkeypatch, steps, options) -> None:
    """k-diffusion's sample_dpm_fast from the grid's σ_max to its last positive σ, n = the grid's steps; its
    float64 σ ends are handed in as tensors (a Python float would make its times float32), and its linspace of
    times is made in float64 (it takes the default dtype)."""
    gm, sched, x_T = setting
    grid = ds.make_grid(sched, steps, "karras")
    sig = sched.sigma(grid)
    noises = _noises(steps)
    feed = iter(noises)
    monkeypatch.setattr(torch, "linspace", lambda *a, **kw: _linspace(*a, dtype=F64, **kw))
    ref = k_sampling.sample_dpm_fast(
        _denoiser(gm, sched),
        x_T * math.sqrt(1 + sig[0].item() ** 2),
        sig[-2],
        sig[0],
        steps,
        disable=True,
        noise_sampler=lambda s, u: next(feed),
        **options,
    )
    monkeypatch.undo()
    drawn = iter(noises)
    ours = ds.sample(
        gm,
        schedule=sched,
        sampler="dpm-fast",
        grid=grid,
        x_T=x_T,
        noise_sampler=lambda like: next(drawn),
        full_output=True,
        **options,
    )
    _close(ours.samples, ref)
    assert ours.nfe == steps


@pytest.mark.parametrize(
    "options",
    [{}, {"order": 2}, {"rtol": 2**-7, "atol": 2**-10, "pcoeff": 0.2, "dcoeff": 0.1}, {"eta": 0.5}],
)
def test_dpm_adaptive_matches_k_diffusion_sample_by_sample(k_sampling, setting, options) -> None:
    """k-diffusion controls the step size of the whole batch as one system; dpm-adaptive controls each sample's:
    each sample equals k-diffusion's run of that sample alone. With η > 0 each is run alone on both sides.
    k-diffusion holds rtol and atol as float32 tensors: the tolerances here are exact in float32."""
    gm, sched, x_T = setting
    options = {"rtol": 3 * 2**-6, "atol": 2**-7, **options}
    grid = ds.make_grid(sched, 10, "karras")
    sig = sched.sigma(grid)
    stochastic = "eta" in options
    ours = None if stochastic else ds.sample(gm, schedule=sched, sampler="dpm-adaptive", grid=grid, x_T=x_T, **options)
    for i in range(B):
        noises = [n[:1] for n in _noises(400, seed=10 + i)]
        feed, drawn = iter(noises), iter(noises)
        ref, info = k_sampling.sample_dpm_adaptive(
            _denoiser(gm, sched),
            x_T[i : i + 1] * math.sqrt(1 + sig[0].item() ** 2),
            sig[-2],
            sig[0],
            disable=True,
            noise_sampler=lambda s, u: next(feed),
            return_info=True,
            **options,
        )
        alone = ds.sample(
            gm,
            schedule=sched,
            sampler="dpm-adaptive",
            grid=grid,
            x_T=x_T[i : i + 1],
            noise_sampler=lambda like: next(drawn),
            full_output=True,
            **options,
        )
        _close(alone.samples, ref)
        assert alone.nfe == info["nfe"] and info["n_accept"] > 3
        if ours is not None:
            _close(ours[i : i + 1], ref)
