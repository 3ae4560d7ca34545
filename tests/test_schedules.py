"""Schedules against closed forms and diffusers; invariants for every registered schedule; spacings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

import diffsampler as ds
from diffsampler.schedules import DiscreteSchedule

F64 = torch.float64
DIFFUSERS_NAMES = {
    "linear": "linear",
    "scaled-linear": "scaled_linear",
    "cosine": "squaredcos_cap_v2",
    "sigmoid": "sigmoid",
}


@pytest.mark.parametrize("name", ds.SCHEDULES.names())
def test_invariants(name: str) -> None:
    s = ds.SCHEDULES.get(name)()
    t = torch.linspace(0, 1, 2001, dtype=F64)
    assert s.alpha_bar(0.0).item() == 1.0
    lam = s.log_snr(t[1:-1])
    assert torch.all(torch.isfinite(lam)) and torch.all(lam[1:] < lam[:-1]), "log-SNR must fall strictly"
    end = s.log_snr(1.0).item()  # finite, or −∞ where the schedule reaches zero SNR (rectified flow)
    assert end < lam[-1].item() and (math.isfinite(end) or s.alpha_bar(1.0).item() == 0)
    ab = s.alpha_bar(t)
    torch.testing.assert_close(s.alpha(t) ** 2, ab)
    torch.testing.assert_close(s.std(t) ** 2, 1 - ab)
    inner = t[(t > 0.001) & (t < 0.995)]
    torch.testing.assert_close(s.sigma(inner), ((1 - s.alpha_bar(inner)) / s.alpha_bar(inner)).sqrt())
    torch.testing.assert_close(s.t_from_log_snr(s.log_snr(inner)), inner, atol=1e-9, rtol=0)
    torch.testing.assert_close(s.t_from_sigma(s.sigma(inner)), inner, atol=1e-9, rtol=0)


@pytest.mark.parametrize("name", list(DIFFUSERS_NAMES))
def test_discrete_matches_diffusers(name: str) -> None:
    kw = {"beta_start": 0.00085, "beta_end": 0.012} if name == "scaled-linear" else {}
    ref = DDPMScheduler(beta_schedule=DIFFUSERS_NAMES[name], **kw)
    s = ds.SCHEDULES.get(name)(num_train_timesteps=1000)
    torch.testing.assert_close(s.betas, ref.betas.double(), rtol=1e-6, atol=1e-9)
    # diffusers accumulates in float32; ours is float64
    torch.testing.assert_close(s.alphas_cumprod, ref.alphas_cumprod.double(), rtol=1e-4, atol=1e-7)
    rebuilt = DiscreteSchedule.from_diffusers(ref.config)
    torch.testing.assert_close(rebuilt.alphas_cumprod, s.alphas_cumprod, rtol=1e-12, atol=0)


def test_knots_are_exact_and_interpolation_is_log_linear() -> None:
    s = ds.SCHEDULES.get("linear")()
    i = torch.arange(1000)
    assert torch.equal(s.alpha_bar(s.index_to_t(i)), s.alphas_cumprod)
    assert torch.equal(s.model_time(s.index_to_t(i)), i.double())
    ref = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=F64), 0)
    torch.testing.assert_close(s.alphas_cumprod, ref, rtol=1e-13, atol=0)
    mid = s.log_alpha_bar(torch.tensor([10.5 / 1000], dtype=F64))  # halfway between knots 9 and 10
    torch.testing.assert_close(mid, 0.5 * (ref[9].log() + ref[10].log()).reshape(1))
    assert s.log_alpha_bar(0.5 / 1000).item() == pytest.approx(0.5 * math.log(1 - 1e-4), rel=1e-12)


def test_cosine_closed_form() -> None:
    s = ds.SCHEDULES.get("cosine")(num_train_timesteps=1000)
    f = lambda u: np.cos((u + 0.008) / 1.008 * np.pi / 2) ** 2  # noqa: E731
    i = np.arange(900)  # below the β ≤ 0.999 clip, ᾱ_i = f((i+1)/T)/f(0)
    np.testing.assert_allclose(s.alphas_cumprod[:900].numpy(), f((i + 1) / 1000) / f(0), rtol=1e-10)
    assert s.betas.max().item() == pytest.approx(0.999)


def test_sigmoid_betas_closed_form() -> None:
    s = ds.SCHEDULES.get("sigmoid")(num_train_timesteps=50, beta_start=0.001, beta_end=0.05)
    x = np.linspace(-6, 6, 50)
    np.testing.assert_allclose(s.betas.numpy(), 1 / (1 + np.exp(-x)) * (0.05 - 0.001) + 0.001, rtol=1e-12)


def test_continuous_closed_forms() -> None:
    t = torch.linspace(0, 1, 11, dtype=F64)
    vp = ds.SCHEDULES.get("vp-continuous")(beta_min=0.1, beta_max=20.0)
    torch.testing.assert_close(vp.alpha_bar(t), torch.exp(-0.1 * t - 0.5 * (20 - 0.1) * t**2))
    sg = ds.SCHEDULES.get("sigmoid-alphabar")(start=-3, end=3, tau=0.7)
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    tn = t.numpy()
    ref = (sig(3 / 0.7) - sig((tn * 6 - 3) / 0.7)) / (sig(3 / 0.7) - sig(-3 / 0.7))
    np.testing.assert_allclose(sg.alpha_bar(t).numpy(), np.clip(ref, 1e-9, 1), rtol=1e-12)


def test_from_diffusers_config_variants() -> None:
    betas = np.linspace(1e-3, 0.03, 40)
    s = DiscreteSchedule.from_diffusers({"num_train_timesteps": 40, "trained_betas": betas.tolist()})
    np.testing.assert_allclose(s.betas.numpy(), betas)
    with pytest.raises(ValueError, match="'karras'.*supported: linear"):
        DiscreteSchedule.from_diffusers({"beta_schedule": "karras"})
    flow = DiscreteSchedule.from_diffusers({"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 3.0})
    assert type(flow).__name__ == "RectifiedFlow" and flow.shift == 3.0


def test_zero_terminal_snr_is_diffusers_rescale() -> None:
    """rescale_betas_zero_snr (Lin et al. 2024) gives diffusers' betas, ᾱ_T = 0 exactly, and a continuous ᾱ(t)."""
    from diffusers.schedulers.scheduling_ddim import rescale_zero_terminal_snr

    s = DiscreteSchedule.from_diffusers(
        {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "rescale_betas_zero_snr": True}
    )
    plain = ds.SCHEDULES.get("scaled-linear")()
    np.testing.assert_allclose(s.betas.numpy(), rescale_zero_terminal_snr(plain.betas).numpy(), rtol=1e-12)
    assert s.alpha_bar(1.0).item() == 0.0 and s.log_snr(1.0).item() == -math.inf
    assert s.default_spacing == "trailing" and plain.default_spacing is None  # start at zero SNR unless asked
    assert s.alpha_bar(s.t_min).item() == pytest.approx(plain.alpha_bar(plain.t_min).item(), rel=1e-12)
    t = torch.tensor([1 - 0.7 / 1000, 1 - 0.2 / 1000], dtype=torch.float64)  # inside the last segment
    ab_prev = s.alpha_bar(1 - 1 / 1000).item()
    torch.testing.assert_close(s.alpha_bar(t), ab_prev * torch.tensor([0.7, 0.2], dtype=torch.float64))
    torch.testing.assert_close(s.t_from_log_snr(s.log_snr(t)), t)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("steps", [1, 7, 10, 50, 1000])
def test_index_spacings_match_diffusers(spacing: str, steps: int) -> None:
    s = ds.SCHEDULES.get("linear")()
    ref = DDIMScheduler(timestep_spacing=spacing)
    ref.set_timesteps(steps)
    grid = ds.make_grid(s, steps, spacing)
    assert grid[-1].item() == 0.0 and grid.numel() == steps + 1
    assert torch.equal(s.model_time(grid[:-1]).long(), ref.timesteps)


def test_quadratic_karras_logsnr_spacings() -> None:
    s = ds.SCHEDULES.get("linear")()
    q = ds.make_grid(s, 10, "quadratic")[:-1]
    expected = [int(v) for v in np.linspace(0, np.sqrt(800), 10) ** 2][::-1]
    assert s.model_time(q).long().tolist() == expected
    k = ds.make_grid(s, 8, "karras", rho=7.0)[:-1]
    sig = s.sigma(k)
    smin, smax = s.sigma(s.t_min).item(), s.sigma(1.0).item()
    ramp = np.linspace(0, 1, 8)
    np.testing.assert_allclose(
        sig.numpy(), (smax ** (1 / 7) + ramp * (smin ** (1 / 7) - smax ** (1 / 7))) ** 7, rtol=1e-9
    )
    lam = s.log_snr(ds.make_grid(s, 9, "logsnr")[:-1])
    np.testing.assert_allclose(np.diff(lam.numpy()), np.full(8, (lam[-1] - lam[0]).item() / 8), rtol=1e-9)
    u = ds.make_grid(ds.SCHEDULES.get("vp-continuous")(), 4, "uniform")
    assert u.tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_spacing_errors() -> None:
    s = ds.SCHEDULES.get("linear")(num_train_timesteps=100)
    with pytest.raises(ValueError, match="steps=101: more than the schedule's 100"):
        ds.make_grid(s, 101, "trailing")
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="steps=.*: must be an integer ≥ 1"):
            ds.make_grid(s, bad, "leading")  # type: ignore[arg-type]
    with pytest.raises(
        KeyError, match="unknown spacing 'nope'; known: ays, beta, beta57, ddim-uniform, edm, exponential"
    ):
        ds.make_grid(s, 10, "nope")
    assert ds.make_grid(s, 500, "karras").numel() == 501  # continuous spacings are not bound by T
