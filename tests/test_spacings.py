"""Named spacings against their sources: k-diffusion's functions, ComfyUI's schedulers (written out here from
their published definitions), the published Align Your Steps lists; invariants for every registered spacing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

import diffsampler as ds
from diffsampler.schedules.grids import AYS_SIGMAS

F64 = torch.float64
NEW = ["exponential", "polyexponential", "kl-optimal", "simple", "ddim-uniform", "sgm-uniform", "beta", "ays", "edm"]
NEW += ["linear-quadratic", "laplace", "vp", "beta57"]
STARTS_AT_T1 = {
    "trailing",
    "uniform",
    "logsnr",
    "karras",
    "edm",
    "exponential",
    "polyexponential",
    "kl-optimal",
    "simple",
    "sgm-uniform",
    "beta",
    "model",
    "flow",
    "shifted-uniform",
    "linear-quadratic",
    "beta57",
}
TOO_HIGH = {("vp", "scaled-linear")}  # the VP-SDE's σ_max = 152 is above scaled-linear's 14.6
EPS32 = float(torch.finfo(torch.float32).eps)


def _sigmas(schedule, steps: int, spacing: str, **options) -> np.ndarray:
    return schedule.sigma(ds.make_grid(schedule, steps, spacing, **options)).numpy()


def _train_sigmas(schedule) -> np.ndarray:
    """ComfyUI's ``model_sampling.sigmas``: σ at training indices 0 … T−1, ascending."""
    ab = schedule.alphas_cumprod.numpy()
    return ((1 - ab) / ab) ** 0.5


@pytest.mark.parametrize("schedule", ["linear", "scaled-linear", "cosine", "vp-continuous"])
@pytest.mark.parametrize("spacing", sorted(ds.SPACINGS.names()))
@pytest.mark.parametrize("steps", [1, 2, 5, 10, 28])
def test_every_spacing_is_a_decreasing_grid_from_the_top_to_zero(schedule: str, spacing: str, steps: int) -> None:
    s = ds.SCHEDULES.get(schedule)()
    if spacing == "model":  # as read from a diffusers config that says so
        s.config_spacing = ("trailing", {})
    if (spacing, schedule) in TOO_HIGH:
        with pytest.raises(ValueError, match="above this schedule's σ_max"):
            ds.make_grid(s, steps, spacing)
        return
    g = ds.make_grid(s, steps, spacing)
    assert g.numel() == steps + 1 and g[-1].item() == 0.0 and torch.all(g[1:] < g[:-1]) and g[0].item() <= 1.0
    if spacing == "ays":  # SD's σ_max, below these schedules' own
        assert s.sigma(g[0]).item() == pytest.approx(AYS_SIGMAS["sd1"][0], rel=1e-9)
    elif spacing in STARTS_AT_T1 or (spacing == "linspace" and steps > 1):
        assert g[0].item() == pytest.approx(1.0, abs=1e-12), spacing


@pytest.mark.parametrize("steps", [1, 4, 10, 25])
def test_exponential_polyexponential_edm_match_k_diffusion(k_sampling, steps: int) -> None:
    s = ds.SCHEDULES.get("linear")()
    lo, hi = s.sigma(s.t_min).item(), s.sigma(1.0).item()
    # k-diffusion works in float32: a few ulp of log σ (exponential) or of σ^{1/ρ} at σ_max, relative to σ_min^{1/ρ}
    # and raised to the power ρ (karras), become relative errors of σ
    k_rtol = 4 * EPS32 * max(abs(math.log(lo)), abs(math.log(hi)))
    karras_rtol = 4 * 5.0 * EPS32 * (hi / lo) ** (1 / 5.0)
    ref = k_sampling.get_sigmas_exponential(steps, lo, hi).double().numpy()
    np.testing.assert_allclose(_sigmas(s, steps, "exponential"), ref, rtol=k_rtol)
    for rho in (0.5, 1.0, 2.0):
        ref = k_sampling.get_sigmas_polyexponential(steps, lo, hi, rho=rho).double().numpy()
        np.testing.assert_allclose(_sigmas(s, steps, "polyexponential", rho=rho), ref, rtol=k_rtol)
    if steps > 1:  # k-diffusion's karras ramp divides by N − 1
        ref = k_sampling.get_sigmas_karras(steps, lo, hi, rho=5.0).double().numpy()
        np.testing.assert_allclose(_sigmas(s, steps, "edm", rho=5.0), ref, rtol=karras_rtol)
        assert torch.equal(ds.make_grid(s, steps, "edm"), ds.make_grid(s, steps, "karras"))


@pytest.mark.parametrize("steps", [1, 3, 7, 10, 30])
def test_kl_optimal_is_uniform_in_arctan_sigma(steps: int) -> None:
    s = ds.SCHEDULES.get("scaled-linear")()
    lo, hi = s.sigma(s.t_min).item(), s.sigma(1.0).item()
    r = np.arange(steps) / max(steps - 1, 1)
    ref = np.append(np.tan(r * math.atan(lo) + (1 - r) * math.atan(hi)), 0.0)
    np.testing.assert_allclose(_sigmas(s, steps, "kl-optimal"), ref, rtol=1e-9)


@pytest.mark.parametrize("steps", [1, 3, 6, 7, 10, 20, 999])
def test_simple_and_ddim_uniform_are_comfyui_s(steps: int) -> None:
    s = ds.SCHEDULES.get("scaled-linear")()
    sig = _train_sigmas(s)
    simple = [sig[-(1 + int(x * (len(sig) / steps)))] for x in range(steps)] + [0.0]
    np.testing.assert_allclose(_sigmas(s, steps, "simple"), simple, rtol=1e-9)
    comfy, x, ss = [0.0], 1, max(len(sig) // steps, 1)  # ComfyUI's ddim_uniform loop
    while x < len(sig):
        comfy.append(sig[x])
        x += ss
    comfy = comfy[::-1]
    ours = _sigmas(s, steps, "ddim-uniform")
    if len(comfy) == steps + 1:
        np.testing.assert_allclose(ours, comfy, rtol=1e-9)
    else:  # ComfyUI adds a step on top where 1 + N·⌊T/N⌋ < T (N = 7: from index 995); the rest is the same
        assert 1 + steps * (1000 // steps) < 1000 and len(comfy) == steps + 2
        np.testing.assert_allclose(ours, comfy[1:], rtol=1e-9)
    idx = s.model_time(ds.make_grid(s, steps, "ddim-uniform")[:-1]).round().long()
    assert idx.tolist() == [1 + k * (1000 // steps) for k in range(steps)][::-1]


@pytest.mark.parametrize("steps", [1, 4, 10, 33])
def test_sgm_uniform_is_comfyui_s(steps: int) -> None:
    s = ds.SCHEDULES.get("linear")()
    log_sig = np.log(_train_sigmas(s))
    ts = np.linspace(len(log_sig) - 1, 0, steps + 1)[:-1]
    lo, hi, w = np.floor(ts).astype(int), np.ceil(ts).astype(int), ts - np.floor(ts)
    ref = np.append(np.exp((1 - w) * log_sig[lo] + w * log_sig[hi]), 0.0)
    np.testing.assert_allclose(_sigmas(s, steps, "sgm-uniform"), ref, rtol=1e-9)


@pytest.mark.parametrize("steps", [1, 5, 10, 40])
@pytest.mark.parametrize("ab", [(0.6, 0.6), (1.0, 1.0), (0.5, 2.0)])
def test_beta_is_the_beta_quantiles_of_the_training_indices(steps: int, ab: tuple[float, float]) -> None:
    s = ds.SCHEDULES.get("linear")()
    idx = s.model_time(ds.make_grid(s, steps, "beta", alpha=ab[0], beta=ab[1])[:-1]).round().long().numpy()
    q = 1 - np.linspace(0, 1, steps, endpoint=False)
    if ab == (1.0, 1.0):  # Beta(1, 1) is uniform: F⁻¹(q) = q
        np.testing.assert_array_equal(idx, np.rint(q * 999))
    else:
        np.testing.assert_array_equal(idx, np.rint(scipy.stats.beta.ppf(q, *ab) * 999))
    if ab[0] == ab[1] and steps > 1:  # a symmetric density: F⁻¹(1 − p) = 1 − F⁻¹(p)
        assert all(abs(idx[k] + idx[steps - k] - 999) <= 1 for k in range(1, steps))


def _loglinear_interp(levels: list[float], n: int) -> np.ndarray:
    """The interpolation of the Align Your Steps paper's code: log σ linear on [0, 1]."""
    ys = np.log(np.asarray(levels)[::-1])
    return np.exp(np.interp(np.linspace(0, 1, n), np.linspace(0, 1, len(levels)), ys))[::-1]


@pytest.mark.parametrize("model", ["sd1", "sdxl"])
@pytest.mark.parametrize("steps", [4, 10, 15, 32])
def test_ays_reproduces_the_published_lists(model: str, steps: int) -> None:
    s = ds.SCHEDULES.get("scaled-linear")()  # Stable Diffusion's: its σ_max is the lists' first level
    assert s.sigma(1.0).item() == pytest.approx(14.6146412293, rel=1e-9)
    ours = _sigmas(s, steps, "ays", model=model)
    ref = AYS_SIGMAS[model][:-1] if steps == 10 else _loglinear_interp(list(AYS_SIGMAS[model]), steps + 1)[:-1]
    np.testing.assert_allclose(ours[:-1], ref, rtol=1e-9)
    assert ours[-1] == 0.0
    if steps == 10:
        t0 = ds.make_grid(s, 10, "ays", model=model)[0]  # the list rounds σ_max to 12 digits
        assert t0.item() == pytest.approx(1.0, abs=1e-9) and s.model_time(t0).item() == 999.0


def test_ays_published_values() -> None:
    assert AYS_SIGMAS["sd1"][:4] == (14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520)
    assert AYS_SIGMAS["sdxl"][-3:] == (0.2332364134, 0.1114188177, 0.0291671582)
    assert AYS_SIGMAS["svd"] == (700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002)


def test_new_spacing_errors_name_the_bad_value() -> None:
    s = ds.SCHEDULES.get("linear")()
    with pytest.raises(
        ValueError, match="spacing ays \\(model 'svd'\\) starts at σ = 700, above this schedule's σ_max = 157"
    ):
        ds.make_grid(s, 10, "ays", model="svd")
    with pytest.raises(ValueError, match="unknown ays model 'sd3'; known: sd1, sdxl, svd"):
        ds.make_grid(s, 10, "ays", model="sd3")
    with pytest.raises(
        ValueError,
        match="spacing 'beta' \\(alpha=0.6, beta=0.6\\) with steps=139 puts two steps "
        "on training index 999; use fewer steps",
    ):
        ds.make_grid(s, 139, "beta")
    assert ds.make_grid(s, 138, "beta").numel() == 139
    with pytest.raises(ValueError, match="spacing 'quadratic' with steps=50 puts two steps on training index"):
        ds.make_grid(s, 50, "quadratic")
    with pytest.raises(ValueError, match="needs alpha > 0 and beta > 0, got alpha=0.0, beta=0.6"):
        ds.make_grid(s, 5, "beta", alpha=0.0)
    with pytest.raises(ValueError, match="steps=1000: more than the schedule's 1000 training steps less one"):
        ds.make_grid(s, 1000, "ddim-uniform")
    with pytest.raises(ValueError, match="steps=1001: more than the schedule's 1000 training steps"):
        ds.make_grid(s, 1001, "simple")


@pytest.mark.parametrize("spacing", NEW)
@pytest.mark.parametrize("sampler", ["ddim", "dpm-solver++", "heun", "unipc"])
def test_every_sampler_walks_the_new_spacings(mixture, spacing: str, sampler: str) -> None:
    r = ds.sample(
        mixture,
        schedule="linear",
        sampler=sampler,
        steps=6,
        spacing=spacing,
        shape=(4, 2),
        seed=0,
        dtype=F64,
        full_output=True,
    )
    assert torch.isfinite(r.samples).all() and r.nfe == (11 if sampler == "heun" else 6)


@pytest.mark.parametrize("steps", [2, 3, 4, 10, 64])
@pytest.mark.parametrize("threshold", [0.025, 0.1])
def test_linear_quadratic_is_mochi_s(steps: int, threshold: float) -> None:
    """diffusers' Mochi pipeline's list on a flow (its own times), and σ_max times it on a VP schedule (ComfyUI)."""
    from diffusers.pipelines.mochi.pipeline_mochi import linear_quadratic_schedule

    ref = np.array(linear_quadratic_schedule(steps, threshold))
    flow = ds.SCHEDULES.get("rectified-flow")()
    np.testing.assert_allclose(ds.make_grid(flow, steps, "linear-quadratic", threshold_noise=threshold)[:-1], ref)
    vp = ds.SCHEDULES.get("linear")()
    hi = vp.sigma(1.0).item()
    got = _sigmas(vp, steps, "linear-quadratic", threshold_noise=threshold)[:-1]
    np.testing.assert_allclose(got, hi * ref, rtol=1e-9)


@pytest.mark.parametrize("steps,linear", [(10, 5), (10, 3), (64, 32), (7, 6)])
def test_linear_quadratic_joins_its_line_smoothly_and_reaches_zero_at_n(steps: int, linear: int) -> None:
    """The closed form: s_k = kτ/L below L, then the quadratic with s(L) = τ, s′(L) = τ/L and s(N) = 1."""
    from diffsampler.schedules.more_spacings import linear_quadratic_levels

    tau = 0.025
    s = 1 - linear_quadratic_levels(steps, tau, linear).numpy()
    k = np.arange(steps)
    np.testing.assert_allclose(s[:linear], k[:linear] * tau / linear, rtol=1e-12)
    a, b, c = np.polyfit(k[linear:], s[linear:], 2) if steps - linear >= 3 else (None, None, None)
    if a is not None:
        assert a * linear**2 + b * linear + c == pytest.approx(tau, abs=1e-9)
        assert 2 * a * linear + b == pytest.approx(tau / linear, abs=1e-9)
        assert a * steps**2 + b * steps + c == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("steps", [1, 2, 5, 10, 31])
@pytest.mark.parametrize("mu,beta", [(0.0, 0.5), (0.5, 1.0)])
def test_laplace_is_the_laplace_quantiles_clamped(steps: int, mu: float, beta: float) -> None:
    """log σ_k = scipy's Laplace(μ, β) quantile of 1 − r_k, up to ComfyUI's 10⁻⁵ inside the log, clamped."""
    s = ds.SCHEDULES.get("linear")()
    lo, hi = s.sigma(s.t_min).item(), s.sigma(1.0).item()
    r = np.linspace(0, 1, steps)
    ref = np.clip(np.exp(scipy.stats.laplace.ppf(1 - r, loc=mu, scale=beta)), lo, hi)
    inner = 1 - 2 * np.abs(0.5 - r)
    atol = np.where(inner > 0, beta * 1e-5 / np.maximum(inner, 1e-300), np.inf)  # d log σ of the 10⁻⁵
    got = _sigmas(s, steps, "laplace", mu=mu, beta=beta)[:-1]
    both = np.isfinite(atol)
    assert np.all(np.abs(np.log(got[both]) - np.log(ref[both])) <= 1.01 * atol[both] + 1e-12)
    assert np.all((got >= lo * (1 - 1e-9)) & (got <= hi * (1 + 1e-9)))


@pytest.mark.parametrize("steps", [1, 3, 10, 40])
def test_vp_matches_k_diffusion(k_sampling, steps: int) -> None:
    s = ds.SCHEDULES.get("linear")()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # k-diffusion's linspace then runs in float64, as ours
    try:
        ref = k_sampling.get_sigmas_vp(steps).numpy()
    finally:
        torch.set_default_dtype(previous)
    np.testing.assert_allclose(_sigmas(s, steps, "vp"), ref, rtol=1e-9)


def test_beta57_is_beta_at_half_and_seven_tenths() -> None:
    s = ds.SCHEDULES.get("linear")()
    assert torch.equal(ds.make_grid(s, 12, "beta57"), ds.make_grid(s, 12, "beta", alpha=0.5, beta=0.7))


def test_the_newer_spacings_errors_name_the_bad_value() -> None:
    s = ds.SCHEDULES.get("scaled-linear")()
    with pytest.raises(ValueError, match="spacing 'vp' starts at σ = 152.*above this schedule's σ_max = 14.6"):
        ds.make_grid(s, 10, "vp")
    with pytest.raises(ValueError, match="linear_steps must be between 1 and steps − 1 = 9, got 10"):
        ds.make_grid(s, 10, "linear-quadratic", linear_steps=10)
    with pytest.raises(ValueError, match="needs 0 < threshold_noise < 1, got 1.5"):
        ds.make_grid(s, 10, "linear-quadratic", threshold_noise=1.5)
    with pytest.raises(ValueError, match="spacing 'laplace' needs beta > 0, got beta=0"):
        ds.make_grid(s, 10, "laplace", beta=0)
