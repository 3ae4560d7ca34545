"""Guidance on exact Gaussian-mixture targets, whose class-conditionals are known in closed form."""

from __future__ import annotations

import re

import pytest
import torch

import diffsampler as ds
from diffsampler.guidance import CFG, ClassifierGuidance, Compose
from diffsampler.guidance.apg import APG
from diffsampler.guidance.autoguidance import AutoGuidance
from diffsampler.guidance.cfg_pp import CFGPP
from diffsampler.guidance.cfg_zero_star import CFGZeroStar
from diffsampler.guidance.epsilon_scaling import EpsilonScaling
from diffsampler.guidance.pag import PAG
from diffsampler.guidance.thresholding import DynamicThresholding

F64 = torch.float64


def bayes_classifier(mixture: ds.GaussianMixture, schedule):
    """The exact p(y | x_t): logits log w_k + log N(x; √ᾱ μ_k, ᾱ v_k + 1 − ᾱ), on model time."""

    def classify(x: torch.Tensor, t_model: torch.Tensor) -> torch.Tensor:
        t = schedule.index_to_t(t_model.double())
        return mixture._posterior_terms(
            x.reshape(x.shape[0], -1).double(), schedule.alpha(t), schedule.std(t) ** 2, None
        )[0]

    return classify


def _eps(mixture, schedule):
    return lambda x, t, **c: mixture.eps(x, t, schedule, **c)


@pytest.fixture
def setting(mixture):
    s = ds.SCHEDULES.get("linear")()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 2, generator=g, dtype=F64) * 2
    t = torch.tensor([0.95, 0.7, 0.5, 0.3, 0.1, 0.02], dtype=F64)
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    return mixture, s, x, t, y


def test_cfg_scale_one_is_the_exact_conditional(setting) -> None:
    mixture, s, x, t, y = setting
    guided = CFG(scale=1.0)(_eps(mixture, s), s, mixture)
    torch.testing.assert_close(
        guided(x, t, class_labels=y), mixture.eps(x, t, s, class_labels=y), rtol=1e-12, atol=1e-12
    )
    unconditional = CFG(scale=0.0)(_eps(mixture, s), s, mixture)(x, t, class_labels=y)
    torch.testing.assert_close(unconditional, mixture.eps(x, t, s), rtol=1e-12, atol=1e-12)
    e_c, e_u = mixture.eps(x, t, s, class_labels=y), mixture.eps(x, t, s)
    torch.testing.assert_close(
        CFG(scale=4.0)(_eps(mixture, s), s, mixture)(x, t, class_labels=y), e_u + 4.0 * (e_c - e_u)
    )


def test_classifier_guidance_with_bayes_classifier_is_the_exact_conditional(setting) -> None:
    mixture, s, x, t, y = setting
    guided = ClassifierGuidance(bayes_classifier(mixture, s), scale=1.0)(_eps(mixture, s), s, mixture)
    torch.testing.assert_close(guided(x, t, class_labels=y), mixture.eps(x, t, s, class_labels=y), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("which", ["cfg", "classifier"])
def test_guided_samples_land_in_the_requested_component(mixture, which: str) -> None:
    """Exact conditional sampling: a sample is assigned to its class as often as true draws are (≈ 1 here)."""
    s = ds.SCHEDULES.get("linear")()
    n = 600
    y = torch.arange(n) % 3
    guidance = CFG(scale=1.0) if which == "cfg" else ClassifierGuidance(bayes_classifier(mixture, s), scale=1.0)
    x = ds.sample(
        mixture,
        schedule=s,
        sampler="ddim",
        steps=50,
        shape=(n, 2),
        dtype=F64,
        generator=torch.Generator().manual_seed(1),
        guidance=guidance,
        cond={"class_labels": y},
    )
    rate = (mixture.posterior(x).argmax(1) == y).double().mean().item()
    draws, k = mixture.sample_data(20000, torch.Generator().manual_seed(2))
    expected = (mixture.posterior(draws).argmax(1) == k).double().mean().item()
    assert abs(rate - expected) < 3 * (expected * (1 - expected) / n) ** 0.5 + 2 / n, (rate, expected)


CASES = {
    "cfg": lambda m, s: CFG(scale=2.0, rescale=0.5, interval=(0.2, 0.9)),
    "classifier": lambda m, s: ClassifierGuidance(bayes_classifier(m, s), scale=2.0),
    "compose": lambda m, s: Compose(
        [CFG(scale=2.0), ClassifierGuidance(bayes_classifier(m, s), scale=0.5, pass_labels=True)]
    ),
    "apg": lambda m, s: APG(scale=2.0, norm_threshold=1.0, momentum=-0.5),
    "cfg-zero-star": lambda m, s: CFGZeroStar(scale=2.0, zero_init_steps=1),
    "dynamic-thresholding": lambda m, s: Compose([CFG(scale=2.0), DynamicThresholding(0.9, max_value=3.0)]),
    "autoguidance": lambda m, s: AutoGuidance(weaker(m), scale=2.0),
    "cfg-pp": lambda m, s: Compose([CFGPP(scale=0.8), DynamicThresholding(0.9, max_value=3.0)]),
    "pag": lambda m, s: PAG(scale=2.0),
    "epsilon-scaling": lambda m, s: Compose([CFG(scale=2.0), EpsilonScaling(1.01, slope=0.02)]),
}  # needs attention layers: tests/test_pag.py runs it with every sampler
DOUBLED = {
    "cfg",
    "compose",
    "apg",
    "cfg-zero-star",
    "dynamic-thresholding",
    "autoguidance",
    "cfg-pp",
    "epsilon-scaling",
}


def weaker(mixture: ds.GaussianMixture) -> ds.GaussianMixture:
    """The same mixture with every variance doubled: a blurrier model of the same data."""
    return ds.GaussianMixture(means=mixture.means, weights=mixture.weights, variances=2 * mixture.variances)


def test_cases_cover_every_guidance() -> None:
    assert set(CASES) == {n for n in ds.GUIDANCE.names() if ds.GUIDANCE.origin(n) == "built-in"}


@pytest.mark.parametrize("guidance", sorted(CASES))
@pytest.mark.parametrize("sampler", ds.SAMPLERS.names())
def test_guidance_sampler_matrix(mixture, guidance: str, sampler: str) -> None:
    s = ds.SCHEDULES.get("linear")()
    plain = ds.sample(
        mixture,
        schedule=s,
        sampler=sampler,
        steps=8,
        shape=(4, 2),
        seed=0,
        dtype=F64,
        cond={"class_labels": torch.tensor([0, 1, 2, 0])},
        full_output=True,
    )
    if guidance == "pag":
        with pytest.raises(ValueError, match="pag needs a diffusers UNet with self-attention layers"):
            ds.sample(mixture, schedule=s, sampler=sampler, steps=8, shape=(4, 2), seed=0, guidance=PAG())
        return
    if guidance == "cfg-pp" and not ds.SAMPLERS.meta(sampler)["renoise"]:
        with pytest.raises(ValueError, match=re.escape(f"sampler '{sampler}' cannot re-noise with a second ε")):
            ds.sample(
                mixture,
                schedule=s,
                sampler=sampler,
                steps=8,
                shape=(4, 2),
                seed=0,
                dtype=F64,
                guidance=CASES[guidance](mixture, s),
                cond={"class_labels": torch.tensor([0, 1, 2, 0])},
            )
        return
    run = dict(schedule=s, sampler=sampler, steps=8, shape=(4, 2), seed=0, dtype=F64, full_output=True)
    run["cond"] = {"class_labels": torch.tensor([0, 1, 2, 0])}
    if guidance == "apg" and ds.SAMPLERS.meta(sampler)["adaptive"]:  # its samples finish at different steps
        with pytest.raises(ValueError, match=r"apg's momentum=-0.5 keeps one average per sample, but this step"):
            ds.sample(mixture, guidance=CASES[guidance](mixture, s), **run)
        return
    r = ds.sample(mixture, guidance=CASES[guidance](mixture, s), **run)
    assert torch.isfinite(r.samples).all()
    per_step = 2 if guidance in DOUBLED else 1
    if ds.SAMPLERS.meta(sampler)["adaptive"]:  # its steps follow the guided ε: only the cost of each can be told
        assert r.calls % 3 == 0 and r.nfe >= per_step * 6
    elif guidance != "cfg":
        assert r.nfe == per_step * plain.nfe
    else:  # cfg here has an interval: fewer doubled steps
        assert plain.nfe < r.nfe < 2 * plain.nfe


def test_cfg_counts_the_doubled_batch_and_the_interval(mixture) -> None:
    s = ds.SCHEDULES.get("linear")()
    kw = dict(
        schedule=s,
        sampler="ddim",
        steps=10,
        spacing="trailing",
        shape=(3, 2),
        seed=0,
        cond={"class_labels": 1},
        full_output=True,
    )
    assert ds.sample(mixture, guidance=CFG(scale=3.0), **kw).nfe == 20
    r = ds.sample(mixture, guidance=CFG(scale=3.0, interval=(0.25, 0.65)), **kw)
    assert r.nfe == 10 + 4 and r.calls == 10  # t ∈ {0.6, 0.5, 0.4, 0.3} lie in (0.25, 0.65]


def test_cfg_rescale(setting) -> None:
    mixture, s, x, t, y = setting
    x4 = x.reshape(6, 1, 1, 2).expand(6, 3, 1, 2).contiguous()

    def eps4(xx, tt, **c):
        return mixture.eps(
            xx.reshape(-1, 2), tt.repeat_interleave(3), s, **{k: v.repeat_interleave(3) for k, v in c.items()}
        ).reshape(xx.shape)

    plain = CFG(scale=5.0)(eps4, s, mixture)(x4, t, class_labels=y)
    full = CFG(scale=5.0, rescale=1.0)(eps4, s, mixture)(x4, t, class_labels=y)
    cond = eps4(torch.cat([x4]), t, class_labels=y)
    torch.testing.assert_close(full.std(dim=(1, 2, 3)), cond.std(dim=(1, 2, 3)))
    half = CFG(scale=5.0, rescale=0.5)(eps4, s, mixture)(x4, t, class_labels=y)
    torch.testing.assert_close(half, 0.5 * (plain + full))


def test_guidance_errors(mixture) -> None:
    s = ds.SCHEDULES.get("linear")()
    run = lambda g, **kw: ds.sample(mixture, schedule=s, steps=3, shape=(2, 2), seed=0, guidance=g, **kw)  # noqa
    with pytest.raises(ValueError, match="cfg guidance needs labels: pass cond={'class_labels': labels}"):
        run(CFG(scale=2.0))
    with pytest.raises(ValueError, match="classifier guidance needs labels"):
        run(ClassifierGuidance(bayes_classifier(mixture, s)))
    with pytest.raises(ValueError, match=r"class_labels must lie in \[0, 3\)"):
        run(CFG(scale=2.0), cond={"class_labels": torch.tensor([0, 7])})
    with pytest.raises(ValueError, match=r"class_labels must lie in \[0, 3\), got \[5\]"):
        run(ClassifierGuidance(bayes_classifier(mixture, s)), cond={"class_labels": 5})
    with pytest.raises(ValueError, match="got 3 labels for a batch of 2"):
        run(CFG(scale=2.0), cond={"class_labels": torch.tensor([0, 1, 2])})
    with pytest.raises(ValueError, match="cfg scale must be a finite number ≥ 0, got -1.0"):
        CFG(scale=-1.0)
    with pytest.raises(ValueError, match="classifier scale must be a finite number ≥ 0"):
        ClassifierGuidance(lambda x, t: x, scale=-2)
    with pytest.raises(ValueError, match="rescale must lie in"):
        CFG(rescale=1.5)
    with pytest.raises(ValueError, match="interval must be"):
        CFG(interval=(0.8, 0.2))
    with pytest.raises(ValueError, match="cfg needs a null label"):
        ds.sample(
            lambda x, t, **c: x * 0, schedule=s, steps=2, shape=(2, 2), seed=0, guidance=CFG(), cond={"class_labels": 1}
        )
    with pytest.raises(ValueError, match="compose needs at least one guidance"):
        Compose([])


def test_epsilon_scaling_is_the_model_with_its_eps_divided_by_lambda(mixture) -> None:
    """DDIM under ε/(scale + slope·t) equals DDIM on a model whose ε is divided so; ComfyUI's x − D ← (x − D)/s."""
    s = ds.SCHEDULES.get("linear")()
    x_T = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=F64)

    def shrunk(x, t_model):  # a discrete schedule's model time is the training index t·T − 1
        t = s.index_to_t(t_model.double())
        return mixture.eps(x, t, s) / (1.01 + 0.02 * t)[:, None]

    ours = ds.sample(mixture, schedule=s, sampler="ddim", steps=10, x_T=x_T, guidance=EpsilonScaling(1.01, slope=0.02))
    ref = ds.sample(ds.CallableBackbone(shrunk, schedule=s), sampler="ddim", steps=10, x_T=x_T)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    plain = ds.sample(mixture, schedule=s, sampler="ddim", steps=10, x_T=x_T)
    assert not torch.allclose(ours, plain)
    with pytest.raises(
        ValueError, match="needs λ\\(t\\) = scale \\+ slope·t > 0 on \\[0, 1\\], got scale=1.0, slope=-2"
    ):
        EpsilonScaling(1.0, slope=-2)
