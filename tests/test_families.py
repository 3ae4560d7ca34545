"""Schedules beyond VP: VE/EDM and rectified flow, every sampler on them, and the flow-matching references.

References: closed forms of each family; k-diffusion's samplers, which are written for VE natively
(x = x_0 + σ·ε, model D(x; σ)); diffusers' ``FlowMatchEulerDiscreteScheduler`` for rectified flow; the
exact Gaussian mixture, whose ε and E[x_0 | x_t] are computed in each family's own coordinates.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import diffsampler as ds
from diffsampler.backbones import convert
from diffsampler.schedules.predictions import from_epsilon

from .test_quality import N, assert_mixture

F64 = torch.float64
FAMILIES = {"ve": {}, "rectified-flow": {}, "rectified-flow-shift3": {"shift": 3.0}}


def family(name: str) -> ds.Schedule:
    return ds.SCHEDULES.get(name.replace("-shift3", ""))(**FAMILIES[name])


@pytest.mark.parametrize("name", ["ve", "rectified-flow"])
def test_closed_forms(name: str) -> None:
    s = family(name)
    t = torch.linspace(0.01, 0.99, 25, dtype=F64)
    a, b = s.signal(t), s.noise(t)
    if name == "ve":
        torch.testing.assert_close(a, torch.ones_like(t))
        torch.testing.assert_close(b, 80.0 * t)
        torch.testing.assert_close(s.model_time(t), 80.0 * t)
    else:
        torch.testing.assert_close(a, 1 - t)
        torch.testing.assert_close(b, t)
        torch.testing.assert_close(s.model_time(t), 1000 * t)
    torch.testing.assert_close(s.alpha_bar(t), a**2 / (a**2 + b**2), rtol=1e-12, atol=0)
    torch.testing.assert_close(s.scale(t), (a**2 + b**2).sqrt(), rtol=1e-12, atol=0)
    torch.testing.assert_close(s.log_snr(t), 2 * torch.log(a / b), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(s.sigma(t), b / a, rtol=1e-12, atol=0)
    torch.testing.assert_close(s.t_from_log_snr(s.log_snr(t)), t, rtol=1e-12, atol=1e-14)
    assert s.alpha_bar(0.0).item() == 1.0 and s.scale(0.0).item() == 1.0
    if name == "rectified-flow":
        assert s.alpha_bar(1.0).item() == 0.0 and s.std(1.0).item() == 1.0  # zero SNR at t = 1


@pytest.mark.parametrize("kind", ["epsilon", "sample", "v_prediction", "flow"])
@pytest.mark.parametrize("name", ["linear", "ve", "rectified-flow"])
def test_prediction_types_convert_both_ways(kind: str, name: str) -> None:
    """From a known (x_0, ε): each type's target (v = aε − bx_0, u = ε − x_0) converts back to ε and x̂_0."""
    s = ds.SCHEDULES.get(name)()
    g = torch.Generator().manual_seed(0)
    x0, e = torch.randn(8, 3, generator=g, dtype=F64), torch.randn(8, 3, generator=g, dtype=F64)
    t = torch.rand(8, generator=g, dtype=F64) * 0.9 + 0.05
    a, b = s.signal(t)[:, None], s.noise(t)[:, None]
    x = a * x0 + b * e
    out = {"epsilon": e, "sample": x0, "v_prediction": a * e - b * x0, "flow": e - x0}[kind]
    torch.testing.assert_close(convert(out, x, t, s, kind, "epsilon"), e, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(convert(out, x, t, s, kind, "sample"), x0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(from_epsilon(e, x, t, s, kind), out, rtol=1e-9, atol=1e-9)


def test_flow_prediction_name_from_diffusers() -> None:
    b = ds.CallableBackbone(lambda x, t: x, prediction_type="flow_prediction")
    assert b.prediction_type == "flow"
    with pytest.raises(
        ValueError, match="unknown prediction_type 'velocity'; known: epsilon, sample, v_prediction, flow"
    ):
        ds.CallableBackbone(lambda x, t: x, prediction_type="velocity")


@pytest.mark.parametrize("name", ["ve", "rectified-flow"])
def test_mixture_eps_is_its_own_score(mixture, name: str) -> None:
    """The mixture's ε in the family's coordinates is −b·∇log p_t, p_t = Σ w N(aμ, a²v + b²): by autograd."""
    s = family(name)
    g = torch.Generator().manual_seed(1)
    t = torch.tensor([0.05, 0.3, 0.7, 0.95], dtype=F64)
    x = (
        s.signal(t)[:, None] * mixture.means[torch.tensor([0, 1, 2, 0])]
        + s.noise(t)[:, None] * torch.randn(4, 2, generator=g, dtype=F64)
    ).requires_grad_(True)
    a, b = s.signal(t)[:, None, None], s.noise(t)[:, None, None]
    cov = a**2 * mixture.variances + b**2
    logn = -0.5 * (((x[:, None] - a * mixture.means) ** 2 / cov) + torch.log(2 * math.pi * cov)).sum(-1)
    logp = torch.logsumexp(mixture.weights.log() + logn, 1).sum()
    (score,) = torch.autograd.grad(logp, x)
    torch.testing.assert_close(mixture.eps(x.detach(), t, s), -s.noise(t)[:, None] * score, rtol=1e-10, atol=1e-12)
    # Tweedie: E[x_0 | x] = (x + b²∇log p)/a
    torch.testing.assert_close(
        mixture.denoised(x.detach(), t, s), (x.detach() + b[:, :, 0] ** 2 * score) / a[:, :, 0], rtol=1e-10, atol=1e-10
    )


SAMPLERS = [
    ("ddpm", {"steps": 500}),
    ("euler-maruyama", {"steps": 1000}),
    ("pf-ode", {"method": "rk45", "rtol": 1e-5, "atol": 1e-5}),
    ("ddim", {"steps": 100}),
    ("dpm-solver++", {"steps": 25}),
    ("dpm-solver++", {"steps": 25, "order": 3}),
    ("euler", {"steps": 100}),
    ("euler-ancestral", {"steps": 500}),
    ("heun", {"steps": 50}),
    ("heun", {"steps": 200, "s_churn": 10.0}),
    ("lms", {"steps": 50}),
    ("dpm-solver++-sde", {"steps": 200}),
    ("dpm-solver++-2s", {"steps": 200, "eta": 1.0}),
    ("dpm-solver++-singlestep", {"steps": 80}),
    ("restart", {"steps": 30, "restarts": 2, "restart_steps": 5, "restart_max": 1.0}),
    ("unipc", {"steps": 25}),
    ("deis", {"steps": 25}),
    ("ipndm", {"steps": 25}),
    ("pndm", {"steps": 25}),
    ("plms", {"steps": 25}),
]


@pytest.mark.slow  # 40 runs of 6000 samples, some of 1000 steps: 25 s on 2 cores
@pytest.mark.parametrize("sampler,options", SAMPLERS)
@pytest.mark.parametrize("name", ["ve", "rectified-flow-shift3"])
def test_every_sampler_recovers_the_mixture(mixture, name: str, sampler: str, options: dict) -> None:
    """Weights, means and variances of the exact target, at each family's default spacing (karras on VE;
    diffusers' shifted flow grid on rectified flow, which starts at zero SNR)."""
    gen = torch.Generator().manual_seed(3)
    x = ds.sample(mixture, schedule=family(name), sampler=sampler, shape=(N, 2), generator=gen, dtype=F64, **options)
    assert_mixture(mixture, x)


STEPS = [16, 32, 64, 128]


@pytest.fixture(scope="module", params=["ve", "rectified-flow"])
def reference(request):
    gm = ds.GaussianMixture(
        means=[[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]],
        weights=[0.5, 0.3, 0.2],
        variances=[[0.3, 0.5], [0.4, 0.2], [0.25, 0.25]],
    )
    s = family(request.param)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=F64) * s.scale(1.0).item()
    # from zero SNR (rectified flow) sample() steps first to 1 − 1e-5, whose local error (1e-5)³ is far below tol
    start = [1.0, 1 - 1e-5] if request.param == "rectified-flow" else [1.0]
    ref = ds.sample(
        gm, schedule=s, sampler="pf-ode", method="rk45", rtol=1e-11, atol=1e-11, grid=start + [s.t_min], x_T=x
    )
    return gm, s, x, ref


@pytest.mark.parametrize(
    "sampler,options,order",
    [("euler", {}, 1), ("heun", {}, 2), ("dpm-solver++", {"order": 2}, 2), ("dpm-solver++-2s", {}, 2)],
)
def test_convergence_order(reference, sampler: str, options: dict, order: int) -> None:
    """Fitted order of the global error at t_min against a tight adaptive reference from the same x_T."""
    gm, s, x, ref = reference
    errs = []
    for n in STEPS:
        grid = torch.cat([ds.make_grid(s, n)[:-1], torch.tensor([s.t_min], dtype=F64)])  # n steps to t_min
        out = ds.sample(gm, schedule=s, sampler=sampler, grid=grid, x_T=x, **options)
        errs.append((out - ref).pow(2).sum(1).sqrt().mean().item())
    fitted = -np.polyfit(np.log(STEPS), np.log(errs), 1)[0]
    # Heun steps in EDM σ = t/(1 − t), whose steps next to zero SNR are long on a grid uniform in t: on rectified
    # flow its slope between doublings climbs 1.51, 1.68, 1.75, 1.79 (16 … 256 steps) towards 2, fitting 1.65 here
    low = order - (0.4 if (sampler, type(s).__name__) == ("heun", "RectifiedFlow") else 0.15)
    assert low < fitted < order + 0.35, f"{sampler}: fitted order {fitted:.2f} from errors {errs}"
    assert errs == sorted(errs, reverse=True)


@pytest.mark.parametrize(
    "name,k_name,options",
    [
        ("euler", "sample_euler", {}),
        ("heun", "sample_heun", {}),
        # churn stays below σ_max, where the network was trained
        ("heun", "sample_heun", {"s_churn": 4.0, "s_tmax": 50.0}),
        ("euler-ancestral", "sample_euler_ancestral", {}),
        ("lms", "sample_lms", {}),
        ("dpm-solver++", "sample_dpmpp_2m", {}),
    ],
)
def test_ve_matches_k_diffusion(k_sampling, mixture, monkeypatch, name: str, k_name: str, options: dict) -> None:
    """On VE, k-diffusion's own coordinates: its sampler on D(x; σ) = E[x_0 | x] from x_T = σ_max·z."""
    s, steps = family("ve"), 12
    sigmas = torch.cat([ds.schedules.grids.karras_sigmas(steps, 0.002, 80.0), torch.zeros(1, dtype=F64)])
    x_T = 80.0 * torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    g = torch.Generator().manual_seed(1)
    noises = [torch.randn(6, 2, generator=g, dtype=F64) for _ in range(steps)]
    feed = iter(noises)
    monkeypatch.setattr(torch, "randn_like", lambda like, **kw: next(feed))

    def denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return mixture.denoised(x, (sigma / 80.0).expand(x.shape[0]), s)

    ref = getattr(k_sampling, k_name)(denoiser, x_T, sigmas, disable=True, **options)
    monkeypatch.undo()
    drawn = iter(noises)
    ours = ds.sample(
        mixture,
        schedule=s,
        sampler=name,
        grid=sigmas / 80.0,
        x_T=x_T,
        noise_sampler=lambda like: next(drawn),
        **options,
    )
    assert (ours - ref).abs().max().item() <= 1e-9 * ref.abs().max().item()


def _flow_model(mixture: ds.GaussianMixture, s: ds.Schedule):
    """The exact flow velocity u = ε − x̂_0 as a network on diffusers' timestep t·T."""

    def model(x: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        t = (timestep.to(F64) / 1000).expand(x.shape[0])
        return mixture.eps(x, t, s) - mixture.denoised(x, t, s)

    return model


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_flow_spacing_is_diffusers_flow_match_grid(shift: float) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler

    ref = FlowMatchEulerDiscreteScheduler(shift=shift)
    ref.set_timesteps(20)
    ours = ds.make_grid(ds.RectifiedFlow(shift=shift), 20, "flow")
    torch.testing.assert_close(ours, ref.sigmas.to(F64), rtol=0, atol=1e-6)  # theirs is float32


@pytest.mark.parametrize("shift_terminal", [None, 0.1])
@pytest.mark.parametrize("mu", [None, 0.5, 1.15])
def test_flow_spacing_takes_diffusers_dynamic_and_terminal_shift(mu, shift_terminal) -> None:
    """use_dynamic_shifting with its mu, shift_terminal, and both: the same times as diffusers' scheduler (float32)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    ref = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=mu is not None, shift_terminal=shift_terminal)
    ref.set_timesteps(12, mu=mu)
    ours = ds.make_grid(ds.RectifiedFlow(shift=3.0), 12, "flow", mu=mu, shift_terminal=shift_terminal)
    torch.testing.assert_close(ours, ref.sigmas.to(F64), rtol=0, atol=1e-6)
    if shift_terminal is not None:
        assert ours[-2].item() == pytest.approx(shift_terminal, abs=1e-12)


def test_resolution_shift_mu_is_diffusers_calculate_shift() -> None:
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    from diffsampler.schedules.grids import resolution_shift_mu

    for n in (256, 1024, 4096, 6000):
        assert resolution_shift_mu(n) == pytest.approx(calculate_shift(n), abs=1e-12)
    with pytest.raises(ValueError, match="shift_terminal must lie in \\(0, 1\\), got 1.5"):
        ds.make_grid(ds.RectifiedFlow(), 4, "flow", shift_terminal=1.5)


@pytest.mark.parametrize("sampler", ["ddim", "euler"])
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_rectified_flow_matches_diffusers_flow_match_euler(mixture, sampler: str, shift: float) -> None:
    """DDIM (and Euler in σ) on rectified flow is diffusers' flow-matching Euler x ← x + (t_next − t)·u, from t = 1."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    s, steps = ds.RectifiedFlow(shift=shift), 10
    model = _flow_model(mixture, s)
    sched = FlowMatchEulerDiscreteScheduler(shift=shift)
    sched.set_timesteps(steps)
    x_T = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    x = x_T.clone()
    for t in sched.timesteps:
        x = sched.step(model(x.to(F64), t.reshape(1)).float(), t, x).prev_sample
    backbone = ds.CallableBackbone(model, prediction_type="flow", schedule=s)
    ours = ds.sample(backbone, sampler=sampler, grid=sched.sigmas.to(F64), x_T=x_T.to(F64), full_output=True)
    assert ours.nfe == steps
    # diffusers steps in float32: ten updates of size O(1), each rounded at 2⁻²⁴ relative
    assert (ours.samples - x.to(F64)).abs().max().item() <= 1e-5 * x.abs().max().item()


def test_zero_snr_guidance(mixture) -> None:
    """CFG at zero SNR mixes x̂_0 (ε = x there): conditional at w = 1, equal to the class's own run."""
    s = ds.RectifiedFlow()
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    cond = {"class_labels": torch.tensor(2)}
    plain = ds.sample(mixture, schedule=s, sampler="dpm-solver++", steps=10, x_T=x_T, cond=cond)
    guided = ds.sample(
        mixture,
        schedule=s,
        sampler="dpm-solver++",
        steps=10,
        x_T=x_T,
        cond=cond,
        guidance=ds.GUIDANCE.get("cfg")(scale=1.0),
        full_output=True,
    )
    torch.testing.assert_close(guided.samples, plain, rtol=1e-12, atol=1e-12)
    assert guided.nfe == 20
    assert (plain - mixture.means[2]).norm(dim=1).mean() < 2.0  # near component 2, not the mixture's mean


def test_zero_snr_refusals(mixture, tanh_eps) -> None:
    s = ds.RectifiedFlow()
    with pytest.raises(ValueError, match="APG guidance works on ε, and at zero SNR"):
        ds.sample(
            mixture,
            schedule=s,
            steps=4,
            shape=(2, 2),
            seed=0,
            cond={"class_labels": 0},
            guidance=ds.GUIDANCE.get("apg")(scale=2.0),
        )
    eps_model = ds.CallableBackbone(lambda x, t: torch.zeros_like(x), schedule=s)
    with pytest.raises(ValueError, match="predicts ε, which says nothing of x_0 at zero SNR"):
        ds.sample(eps_model, steps=4, shape=(2, 2), seed=0)
    out = ds.sample(eps_model, steps=4, shape=(2, 2), seed=0, grid=[0.999, 0.5, 0.0])  # below zero SNR: fine
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="spacing 'karras' needs a finite σ at t = 1"):
        ds.sample(mixture, schedule=s, steps=4, shape=(2, 2), seed=0, spacing="karras")


def test_trajectory_in_model_coordinates(k_sampling, mixture) -> None:
    """Trajectories, callbacks and x_T are the model's x (on VE x = x_0 + σ·ε, k-diffusion's own), not the
    samplers' VP x: step by step equal to what k-diffusion's Euler reports."""
    s, steps = family("ve"), 8
    sigmas = torch.cat([ds.schedules.grids.karras_sigmas(steps, 0.002, 80.0), torch.zeros(1, dtype=F64)])
    x_T = 80.0 * torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    theirs = []

    def denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return mixture.denoised(x, (sigma / 80.0).expand(x.shape[0]), s)

    k_sampling.sample_euler(denoiser, x_T, sigmas, disable=True, callback=lambda d: theirs.append(d["x"]))
    seen = []
    r = ds.sample(
        mixture,
        schedule=s,
        sampler="euler",
        grid=sigmas / 80.0,
        x_T=x_T,
        return_trajectory=True,
        callback=lambda info: seen.append(info["x"]),
    )
    torch.testing.assert_close(r.trajectory[:-1], torch.stack(theirs), rtol=1e-9, atol=1e-9)  # x before each step
    torch.testing.assert_close(torch.stack(seen), r.trajectory[1:], rtol=0, atol=0)
    torch.testing.assert_close(r.trajectory[-1], r.samples, rtol=0, atol=0)


def test_zero_terminal_snr_matches_diffusers_ddim(mixture) -> None:
    """A v-prediction model on a zero-terminal-SNR schedule (Lin et al. 2024), trailing from t = 1, equals diffusers'
    DDIMScheduler(rescale_betas_zero_snr=True). (diffusers' multistep solvers move ᾱ_T to 2⁻²⁴ instead of starting
    at zero SNR, so they are another method there.)"""
    from diffusers import DDIMScheduler

    cfg = {
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "rescale_betas_zero_snr": True,
        "prediction_type": "v_prediction",
        "timestep_spacing": "trailing",
    }
    s = ds.DiscreteSchedule.from_diffusers(cfg)

    def model(x: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:  # the exact v = √ᾱ·ε − √(1−ᾱ)·x̂_0
        t = s.index_to_t(timestep.to(F64)).expand(x.shape[0])
        return s.alpha(t)[:, None] * mixture.eps(x, t, s) - s.std(t)[:, None] * mixture.denoised(x, t, s)

    ref = DDIMScheduler(**cfg, clip_sample=False, set_alpha_to_one=True)
    ref.set_timesteps(8)
    x_T = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    x = x_T.clone()
    for t in ref.timesteps:
        x = ref.step(model(x, t.reshape(1)), t, x).prev_sample
    ours = ds.sample(
        ds.CallableBackbone(model, prediction_type="v_prediction", schedule=s),
        sampler="ddim",
        steps=8,
        spacing="trailing",
        x_T=x_T,
        full_output=True,
    )
    assert ours.grid[0].item() == 1.0 and ours.nfe == 8
    # diffusers keeps ᾱ in float32 (2⁻²⁴ relative), which eight steps carry into x at about 1e-6
    assert (ours.samples - x).abs().max().item() <= 1e-5 * x.abs().max().item()


def test_empirical_backbone_on_rectified_flow() -> None:
    """The empirical optimum on rectified flow: from zero SNR, with enough steps, samples land on data points."""
    data = torch.tensor([[1.0, 2.0], [-2.0, 0.5], [0.0, -1.5]], dtype=F64)
    e = ds.Empirical(data, schedule=ds.RectifiedFlow())
    x = ds.sample(e, sampler="dpm-solver++", steps=30, shape=(50, 2), seed=0, dtype=F64)
    nearest = torch.cdist(x, data).min(1).values
    assert nearest.max().item() < 1e-3
    torch.testing.assert_close(
        e.denoised(torch.randn(4, 2, dtype=F64), torch.ones(4, dtype=F64), e.schedule), data.mean(0).expand(4, 2)
    )


@pytest.mark.parametrize("name", ["ve", "rectified-flow"])
def test_bench_and_tune_grid_start_from_the_family_x_T(mixture, tmp_path, name: str) -> None:
    """bench and tune_grid draw x_T as sample() does (s(t_0)·z): a bench cell equals sample() from the same
    per-sample generators, and a tuned grid beats the default grid at its NFE on its own distance."""
    from diffsampler.bench import bench
    from diffsampler.metrics.base import Metric

    s, seen = family(name), {}

    def keep(x, labels, x_T):
        seen.update(x=x, x_T=x_T)
        return 0.0, 0.0, {}

    bench(
        mixture,
        samplers=["dpm-solver++"],
        steps=[8],
        metric=Metric("keep", keep),
        out=tmp_path,
        num_samples=16,
        batch_size=16,
        shape=(2,),
        schedule=s,
        model_name="mixture",
        plots=False,
    )
    r = ds.sample(
        mixture,
        schedule=s,
        sampler="dpm-solver++",
        steps=8,
        shape=(16, 2),
        generator=ds.generators(0, 16),
        return_trajectory=True,
    )
    torch.testing.assert_close(seen["x_T"], r.trajectory[0].float())
    torch.testing.assert_close(seen["x"], r.samples.float())
    tuned = ds.tune_grid(mixture, sampler="ddim", nfe=5, schedule=s, batch=64, fine_steps=60)
    assert tuned.distance < tuned.default_distance, (tuned.distance, tuned.default_distance)


FINE_STEPS = [126, 252, 504]


@pytest.fixture(scope="module", params=["ve", "rectified-flow"])
def tight(request):
    """A tight reference on VE from t = 1, and on rectified flow from t = 0.999 (below zero SNR, where the
    first step is the sampler's own: from zero SNR sample()'s DDIM step bounds the global error at O(h²))."""
    gm = ds.GaussianMixture(
        means=[[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]],
        weights=[0.5, 0.3, 0.2],
        variances=[[0.3, 0.5], [0.4, 0.2], [0.25, 0.25]],
    )
    s = family(request.param)
    top = 1.0 if request.param == "ve" else 0.999
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=F64) * s.scale(top).item()
    ref = ds.sample(gm, schedule=s, sampler="pf-ode", method="rk45", rtol=1e-12, atol=1e-12, grid=[top, s.t_min], x_T=x)
    return gm, s, x, ref, top


@pytest.mark.slow  # 14 cases of up to 504 steps: 15 s on 2 cores
@pytest.mark.parametrize(
    "sampler,options,order",
    [
        # DPM-Solver++(3M) is left out, as on VP: its first-order warm-up step bounds the global error at O(h²)
        ("unipc", {"order": 2}, 3),
        ("unipc", {"order": 3, "corrector": False}, 3),
        ("deis", {"order": 3}, 3),
        ("ipndm", {"order": 2}, 2),
        ("plms", {}, 2),
        ("lms", {"order": 2}, 2),
        ("dpm-solver++-singlestep", {"order": 2}, 2),
    ],
)
def test_multistep_orders(tight, sampler: str, options: dict, order: int) -> None:
    """Higher orders reached at 126–504 steps (lower_order_final off, so that the last step keeps the order)."""
    gm, s, x, ref, top = tight
    errs = []
    for n in FINE_STEPS:
        grid = ds.make_grid(s, n + 1, "karras", sigma_max=s.sigma(top).item())[:-1]  # n steps, top to t_min
        extra = {"lower_order_final": False} if sampler in ("unipc", "dpm-solver++-singlestep") else {}
        out = ds.sample(gm, schedule=s, sampler=sampler, grid=grid, x_T=x, **options, **extra)
        errs.append((out - ref).pow(2).sum(1).sqrt().mean().item())
    fitted = -np.polyfit(np.log(FINE_STEPS), np.log(errs), 1)[0]
    assert order - 0.25 < fitted < order + 0.4, f"{sampler} {options}: fitted order {fitted:.2f} from errors {errs}"
