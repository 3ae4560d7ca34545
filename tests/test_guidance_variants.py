"""APG, CFG-Zero*, CFG++ and dynamic thresholding against diffusers' guiders and schedulers, and closed forms on the
exact class-conditional mixture."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDPMScheduler
from diffusers.guiders.adaptive_projected_guidance import MomentumBuffer, normalized_guidance
from diffusers.guiders.classifier_free_zero_star_guidance import cfg_zero_star_scale

import diffsampler as ds
from diffsampler.guidance import CFG, Compose
from diffsampler.guidance.apg import APG
from diffsampler.guidance.autoguidance import AutoGuidance
from diffsampler.guidance.cfg_pp import CFGPP
from diffsampler.guidance.cfg_zero_star import CFGZeroStar
from diffsampler.guidance.thresholding import DynamicThresholding, dynamic_threshold
from diffsampler.sampling import time_grid

F64 = torch.float64


@pytest.fixture
def setting(mixture):
    s = ds.SCHEDULES.get("linear")()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 2, generator=g, dtype=F64) * 2
    t = torch.tensor([0.95, 0.7, 0.5, 0.3, 0.1, 0.02], dtype=F64)
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    eps = lambda x, t, **c: mixture.eps(x, t, s, **c)  # noqa: E731
    return mixture, s, x, t, y, eps


def _x0(x, e, s, t):
    return (x - s.std(t)[:, None] * e) / s.alpha(t)[:, None]


@pytest.mark.parametrize("space", ["eps", "x0"])
def test_apg_is_diffusers_normalized_guidance(setting, space: str) -> None:
    mixture, s, x, t, y, eps = setting
    guided = APG(scale=4.0, eta=0.3, norm_threshold=1.5, momentum=-0.5, space=space)(eps, s, mixture)
    buffer = MomentumBuffer(-0.5)
    for k in range(3):  # the momentum carries over successive evaluations
        xk = x * (1 - 0.2 * k)
        e_c, e_u = mixture.eps(xk, t, s, class_labels=y), mixture.eps(xk, t, s)
        if space == "eps":
            expected = normalized_guidance(e_c, e_u, 4.0, buffer, 0.3, 1.5)
        else:
            d = normalized_guidance(_x0(xk, e_c, s, t), _x0(xk, e_u, s, t), 4.0, buffer, 0.3, 1.5)
            expected = (xk - s.alpha(t)[:, None] * d) / s.std(t)[:, None]
        torch.testing.assert_close(guided(xk, t, class_labels=y), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("space", ["eps", "x0"])
def test_apg_without_its_knobs_is_cfg_and_at_scale_one_the_exact_conditional(setting, space: str) -> None:
    mixture, s, x, t, y, eps = setting
    plain = APG(scale=3.5, eta=1.0, space=space)(eps, s, mixture)(x, t, class_labels=y)
    torch.testing.assert_close(plain, CFG(scale=3.5)(eps, s, mixture)(x, t, class_labels=y), rtol=1e-10, atol=1e-10)
    one = APG(scale=1.0, eta=0.0, norm_threshold=0.5, space=space)(eps, s, mixture)(x, t, class_labels=y)
    diff = (mixture.eps(x, t, s, class_labels=y) - one).abs().max()  # w = 1: D_u + Δ∥·0 + Δ⊥ ≠ D_c unless η = 1
    exact = APG(scale=1.0, eta=1.0, space=space)(eps, s, mixture)(x, t, class_labels=y)
    torch.testing.assert_close(exact, mixture.eps(x, t, s, class_labels=y), rtol=1e-10, atol=1e-10)
    assert diff > 1e-6  # the projection changes the update: the test above would notice a no-op


def test_cfg_zero_star_is_diffusers_formula_and_zero_init_keeps_x0_at_zero(setting) -> None:
    mixture, s, x, t, y, eps = setting
    e_c, e_u = mixture.eps(x, t, s, class_labels=y), mixture.eps(x, t, s)
    star = cfg_zero_star_scale(e_c.flatten(1), e_u.flatten(1))
    expected = e_u * star + 5.0 * (e_c - e_u * star)
    guided = CFGZeroStar(scale=5.0)(eps, s, mixture)
    torch.testing.assert_close(guided(x, t, class_labels=y), expected, rtol=1e-6, atol=1e-6)  # s* in float32 there
    torch.testing.assert_close(
        CFGZeroStar(scale=1.0)(eps, s, mixture)(x, t, class_labels=y), e_c, rtol=1e-12, atol=1e-12
    )
    zero = CFGZeroStar(scale=5.0, zero_init_steps=1)(eps, s, mixture)
    first = zero(x, t, class_labels=y)
    torch.testing.assert_close(_x0(x, first, s, t), torch.zeros_like(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(zero(x, t, class_labels=y), first)  # the same time again: still the first
    torch.testing.assert_close(zero(x, t * 0.9, class_labels=y), guided(x, t * 0.9, class_labels=y))


@pytest.mark.parametrize("p,max_value", [(0.995, 1.0), (0.9, 2.5), (0.5, 10.0)])
def test_dynamic_threshold_is_diffusers(p: float, max_value: float) -> None:
    x0 = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=F64) * 1.7
    ref = DDPMScheduler(thresholding=True, dynamic_thresholding_ratio=p, sample_max_value=max_value)
    torch.testing.assert_close(dynamic_threshold(x0, p, max_value), ref._threshold_sample(x0), rtol=0, atol=1e-15)


def test_dynamic_thresholding_wraps_any_eps(setting) -> None:
    mixture, s, x, t, y, eps = setting
    e = CFG(scale=4.0)(eps, s, mixture)
    thr = DynamicThresholding(0.75, max_value=2.0)(e, s, mixture)(x, t, class_labels=y)
    x0 = _x0(x, e(x, t, class_labels=y), s, t)
    torch.testing.assert_close(_x0(x, thr, s, t), dynamic_threshold(x0, 0.75, 2.0), rtol=1e-9, atol=1e-9)
    late = DynamicThresholding(0.75, max_value=2.0, interval=(0.0, 0.4))(e, s, mixture)(x, t, class_labels=y)
    torch.testing.assert_close(late[:3], e(x, t, class_labels=y)[:3])  # t > 0.4: left alone
    torch.testing.assert_close(late[3:], thr[3:])


def test_autoguidance_interpolates_between_the_weak_and_the_full_model(setting) -> None:
    mixture, s, x, t, y, eps = setting
    weak = ds.GaussianMixture(means=mixture.means, weights=mixture.weights, variances=2 * mixture.variances)
    full, blurred = mixture.eps(x, t, s, class_labels=y), weak.eps(x, t, s, class_labels=y)
    for w in (0.0, 1.0, 2.5):
        r = ds.sample(
            mixture,
            schedule=s,
            sampler="ddim",
            steps=4,
            x_T=x,
            cond={"class_labels": y},
            guidance=AutoGuidance(weak, scale=w),
            full_output=True,
        )
        assert r.nfe == 8  # the weak network counts
    calls = []

    class Counted:  # the network a guidance wraps: ``of`` gives a second backbone's
        def __init__(self, backbone):
            self.backbone = backbone

        def __call__(self, x, t, **c):
            calls.append(self.backbone)
            return self.backbone.eps(x, t, s, **c)

        def of(self, other):
            return Counted(other)

    guided = AutoGuidance(weak, scale=2.5)(Counted(mixture), s, mixture)(x, t, class_labels=y)
    torch.testing.assert_close(guided, blurred + 2.5 * (full - blurred), rtol=1e-12, atol=1e-12)
    assert calls == [mixture, weak]
    with pytest.raises(ValueError, match="put it first in a compose"):
        AutoGuidance(weak)(lambda x, t, **c: mixture.eps(x, t, s, **c), s, mixture)
    with pytest.raises(ValueError, match="AutoGuidance evaluates a second network, so it must come first"):
        Compose([CFG(), AutoGuidance(weak)])
    same = AutoGuidance(mixture, scale=4.0)(Counted(mixture), s, mixture)(x, t, class_labels=y)
    torch.testing.assert_close(same, full, rtol=1e-12, atol=1e-12)  # a model guided by itself is itself


def _cfgpp_ddim_reference(mixture, s, grid, x, y, lam, clip=None):
    """The official ``ddim_cfg++`` loop: x̂_0 from ε_u + λ(ε_c − ε_u), re-noised with ε_u."""
    ab = s.alpha_bar(grid)
    for i in range(grid.numel() - 1):
        t = grid[i].repeat(x.shape[0])
        e_c, e_u = mixture.eps(x, t, s, class_labels=y), mixture.eps(x, t, s)
        x0 = (x - (1 - ab[i]).sqrt() * (e_u + lam * (e_c - e_u))) / ab[i].sqrt()
        x0 = x0 if clip is None else x0.clamp(-clip, clip)
        x = ab[i + 1].sqrt() * x0 + (1 - ab[i + 1]).sqrt() * e_u
    return x


def _cfgpp_2m_reference(mixture, s, grid, x, y, lam):
    """ComfyUI's ``sample_dpmpp_2m_cfg_pp`` in EDM's σ, on D(y; σ) = y − σ·ε and the unconditional D_u."""
    sig = s.sigma(grid).tolist()[:-1] + [0.0]
    z, old_u = x * (1 + sig[0] ** 2) ** 0.5, None
    for i in range(len(sig) - 1):
        xs, t = z / (1 + sig[i] ** 2) ** 0.5, s.t_from_sigma(torch.tensor(sig[i], dtype=F64)).repeat(x.shape[0])
        e_c, e_u = mixture.eps(xs, t, s, class_labels=y), mixture.eps(xs, t, s)
        d, d_u = z - sig[i] * (e_u + lam * (e_c - e_u)), z - sig[i] * e_u
        h = (math.inf if sig[i + 1] == 0 else -math.log(sig[i + 1])) + math.log(sig[i])
        if old_u is None or sig[i + 1] == 0:
            mix = -math.exp(-h) * d_u
        else:
            r = (math.log(sig[i - 1]) - math.log(sig[i])) / h
            mix = -math.exp(-h) * d_u - math.expm1(-h) / (2 * r) * (d - old_u)
        z, old_u = d + mix + math.exp(-h) * z, d_u
    return z


@pytest.fixture
def cfgpp_run(mixture):
    s = ds.SCHEDULES.get("linear")()
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(3), dtype=F64) * 1.0
    y = torch.arange(64) % 3

    def run(sampler, guidance=None, steps=8, spacing="trailing", **kw):
        cond = {"class_labels": y} if guidance is not None else {}
        return ds.sample(
            mixture,
            schedule=s,
            sampler=sampler,
            steps=steps,
            spacing=spacing,
            x_T=x,
            guidance=guidance,
            cond=cond,
            **kw,
        )

    return mixture, s, x, y, run


@pytest.mark.parametrize("clip", [None, 1.5])
def test_cfgpp_ddim_is_the_official_loop(cfgpp_run, clip) -> None:
    mixture, s, x, y, run = cfgpp_run
    grid = time_grid("ddim", s, 8, "trailing")
    expected = _cfgpp_ddim_reference(mixture, s, grid, x, y, 0.7, clip)
    got = run("ddim", CFGPP(scale=0.7), clip=clip if clip else False)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    cfg = run("ddim", CFG(scale=0.7))
    assert (got - cfg).abs().max() > 1e-3  # re-noising with ε_u is not CFG at the same scale


@pytest.mark.parametrize(
    "sampler,opts",
    [
        ("euler", {}),
        ("euler-ancestral", {"eta": 0.0}),
        ("dpm-solver++", {"order": 1}),
        ("unipc", {"order": 1, "corrector": False}),
    ],
)
def test_cfgpp_first_order_steps_are_the_ddim_step(cfgpp_run, sampler: str, opts) -> None:
    mixture, s, x, y, run = cfgpp_run
    expected = _cfgpp_ddim_reference(mixture, s, time_grid("ddim", s, 8, "trailing"), x, y, 0.7)
    torch.testing.assert_close(run(sampler, CFGPP(scale=0.7), **opts), expected, rtol=1e-9, atol=1e-9)


def test_cfgpp_dpm_solver_2m_is_comfyui_dpmpp_2m_cfg_pp(cfgpp_run) -> None:
    mixture, s, x, y, run = cfgpp_run
    grid = time_grid("dpm-solver++", s, 8, "logsnr")
    expected = _cfgpp_2m_reference(mixture, s, grid, x, y, 0.6)
    torch.testing.assert_close(run("dpm-solver++", CFGPP(scale=0.6), spacing="logsnr"), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    "sampler,opts",
    [
        ("ddim", {"eta": 0.5}),
        ("euler", {}),
        ("euler-ancestral", {}),
        ("dpm-solver++", {"order": 3}),
        ("unipc", {"order": 3}),
    ],
)
def test_cfgpp_at_scale_zero_is_unconditional_sampling(cfgpp_run, sampler: str, opts) -> None:
    mixture, s, x, y, run = cfgpp_run
    plain = run(sampler, None, seed=None, generator=ds.generators(5, 64), **opts)
    zero = run(sampler, CFGPP(scale=0.0), generator=ds.generators(5, 64), **opts)
    torch.testing.assert_close(zero, plain, rtol=1e-10, atol=1e-10)
    guided = run(sampler, CFGPP(scale=0.8), generator=ds.generators(5, 64), **opts)
    hit = (mixture.posterior(guided).argmax(1) == y).double().mean()
    assert hit > (mixture.posterior(plain).argmax(1) == y).double().mean() + 0.2  # guidance moves samples to y


def test_cfgpp_composes_with_thresholding_only(cfgpp_run) -> None:
    mixture, s, x, y, run = cfgpp_run
    thr = run("ddim", Compose([CFGPP(scale=0.7), DynamicThresholding(0.9, max_value=2.0)]), full_output=True)
    assert thr.nfe == 16
    plain = run("ddim", CFGPP(scale=0.7))
    assert (thr.samples - plain).abs().max() > 1e-3
    with pytest.raises(ValueError, match="compose: CFG cannot wrap a guidance that re-noises"):
        run("ddim", Compose([CFGPP(scale=0.7), CFG(scale=2.0)]))


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: AutoGuidance(object()), "weak must be a backbone"),
        (lambda: APG(space="v"), "apg space must be x0 or eps, got 'v'"),
        (lambda: APG(norm_threshold=-1.0), "apg norm_threshold must be ≥ 0"),
        (lambda: CFGZeroStar(zero_init_steps=-1), "zero_init_steps must be an integer ≥ 0, got -1"),
        (lambda: DynamicThresholding(percentile=0.0), "percentile must lie in \\(0, 1\\], got 0.0"),
        (lambda: DynamicThresholding(max_value=0.5), "max_value must be ≥ 1, got 0.5"),
    ],
)
def test_bad_options_are_one_line_errors(make, message) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        make()
