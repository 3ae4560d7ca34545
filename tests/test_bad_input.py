"""Bad input gets a clear error naming the bad value and what is accepted."""

from __future__ import annotations

import re

import pytest
import torch

import diffsampler as ds
from diffsampler.registry import UnknownNameError


def _ok(model, **kw):
    args = dict(schedule="linear", sampler="ddim", steps=5, shape=(2, 6), seed=0)
    args.update(kw)
    return ds.sample(model, **args)


def test_unknown_names(tanh_eps) -> None:
    with pytest.raises(UnknownNameError, match="unknown sampler 'nope'; known: ddim"):
        _ok(tanh_eps, sampler="nope")
    with pytest.raises(UnknownNameError, match="unknown schedule 'nope'; known: cosine, linear"):
        _ok(tanh_eps, schedule="nope")
    with pytest.raises(UnknownNameError, match="unknown spacing 'nope'; known: ays, beta, beta57, ddim-uniform"):
        _ok(tanh_eps, spacing="nope")


@pytest.mark.parametrize("steps", [0, -1, 2.5, "10", None])
def test_steps_must_be_positive_int(tanh_eps, steps) -> None:
    with pytest.raises(ValueError, match=re.escape(f"steps={steps!r}: must be an integer ≥ 1")):
        _ok(tanh_eps, steps=steps)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_more_steps_than_training_steps(tanh_eps, sampler: str) -> None:
    with pytest.raises(ValueError, match="steps=1001: more than the schedule's 1000 training steps"):
        _ok(tanh_eps, sampler=sampler, steps=1001, spacing="karras")
    _ok(tanh_eps, sampler="pf-ode", steps=1001, spacing="karras")  # continuous solvers may take more


def test_shape_mismatch() -> None:
    with pytest.raises(ValueError, match=r"model output \(2, 3\) does not match the shape of x \(2, 6\)"):
        _ok(lambda x, t: x[:, :3])
    with pytest.raises(ValueError, match="does not match the shape of x"):
        _ok(lambda x, t: 1.0)


def test_bad_options(tanh_eps) -> None:
    with pytest.raises(TypeError, match="unknown option 'etta' for sampler 'ddim'; accepted: eta, set_alpha_to_one"):
        _ok(tanh_eps, etta=0.1)
    with pytest.raises(ValueError, match="eta must be ≥ 0, got -0.5"):
        _ok(tanh_eps, eta=-0.5)
    with pytest.raises(ValueError, match="unknown variance 'medium'; known: small, large"):
        _ok(tanh_eps, sampler="ddpm", variance="medium")
    with pytest.raises(ValueError, match="unknown method 'rk3'; known: euler, heun, rk4, rk45"):
        _ok(tanh_eps, sampler="pf-ode", method="rk3")
    with pytest.raises(ValueError, match="rtol and atol must be > 0"):
        _ok(tanh_eps, sampler="pf-ode", method="rk45", rtol=0)
    with pytest.raises(ValueError, match="unknown prediction_type 'x0'; known: epsilon, sample, v_prediction"):
        _ok(tanh_eps, prediction_type="x0")


def test_bad_call_arguments(tanh_eps) -> None:
    with pytest.raises(ValueError, match="pass x_T or shape"):
        ds.sample(tanh_eps, schedule="linear", steps=3)
    with pytest.raises(ValueError, match="no schedule"):
        ds.sample(tanh_eps, steps=3, shape=(1, 6))
    with pytest.raises(ValueError, match="grid times must be strictly decreasing"):
        _ok(tanh_eps, grid=[0.5, 0.7, 0.0])
    with pytest.raises(ValueError, match="seed must be a non-negative integer, got -1"):
        _ok(tanh_eps, seed=-1)
    with pytest.raises(ValueError, match="got 3 generators for a batch of 2"):
        _ok(tanh_eps, seed=None, generator=ds.generators(0, 3))
    with pytest.raises(TypeError, match="sampler must be a registered name or a function"):
        _ok(tanh_eps, sampler=3)


def test_bad_schedule_and_mixture_parameters() -> None:
    with pytest.raises(ValueError, match="need 0 ≤ beta_min < beta_max"):
        ds.SCHEDULES.get("vp-continuous")(beta_min=5, beta_max=1)
    with pytest.raises(ValueError, match="betas must be"):
        ds.DiscreteSchedule([0.1, 1.5])
    with pytest.raises(ValueError, match="means must have shape"):
        ds.GaussianMixture(means=[1.0, 2.0])
    with pytest.raises(ValueError, match="weights must be 2 positive numbers"):
        ds.GaussianMixture(means=[[0.0], [1.0]], weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="variances must be positive"):
        ds.GaussianMixture(means=[[0.0], [1.0]], variances=0.0)
    gm = ds.GaussianMixture(means=[[0.0, 0.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="x has 3 features per sample; the mixture has dimension 2"):
        ds.sample(gm, schedule="linear", steps=2, shape=(1, 3), seed=0)
    with pytest.raises(ValueError, match=r"class_labels must lie in \[0, 2\) \(or the null label 2\), got \[5\]"):
        ds.sample(gm, schedule="linear", steps=2, shape=(1, 2), seed=0, cond={"class_labels": torch.tensor([5])})


def test_option_values_are_checked_against_their_types(tanh_eps) -> None:
    with pytest.raises(TypeError, match="option 'eta' of sampler 'ddim' takes a number, got 'abc'"):
        _ok(tanh_eps, eta="abc")
    with pytest.raises(
        TypeError, match="option 'lower_order_final' of sampler 'dpm-solver\\+\\+' takes true or false, got 'maybe'"
    ):
        _ok(tanh_eps, sampler="dpm-solver++", lower_order_final="maybe")
    with pytest.raises(TypeError, match="option 'max_iterations' of sampler 'pf-ode' takes an integer, got 2.5"):
        _ok(tanh_eps, sampler="pf-ode", method="rk45", max_iterations=2.5)
    _ok(tanh_eps, eta=1)  # an integer is a number


def test_non_finite_values_are_reported_not_returned(tanh_eps) -> None:
    def nan_late(x, t):  # NaN from the third step on (t_model ≤ 600 on the 5-step trailing grid)
        return torch.where(t.reshape(-1, 1) < 650, torch.nan, tanh_eps(x, t))

    with pytest.raises(
        ValueError,
        match=r"the model returned NaN or infinite values at t=0\.6 \(step 3 of 5, "
        r"network call 3\)",
    ):
        _ok(nan_late)
    x_T = torch.randn(2, 6)
    x_T[1, 2] = torch.nan
    with pytest.raises(ValueError, match="x_T holds NaN or infinite values"):
        ds.sample(tanh_eps, schedule="linear", x_T=x_T)


@pytest.mark.parametrize("clip", [-1.0, 0.0, float("nan"), float("inf"), "1"])
def test_clip_must_be_a_positive_number(tanh_eps, clip) -> None:
    with pytest.raises(ValueError, match="clip must be a number > 0"):
        _ok(tanh_eps, clip=clip)


def test_contradicting_or_malformed_arguments(tanh_eps) -> None:
    with pytest.raises(ValueError, match=r"shape \(3, 6\) contradicts x_T's shape \(2, 6\)"):
        ds.sample(tanh_eps, schedule="linear", x_T=torch.zeros(2, 6), shape=(3, 6))
    with pytest.raises(ValueError, match=r"a grid is a 1-D sequence of times, got shape \(2, 2\)"):
        _ok(tanh_eps, grid=[[0.9, 0.5], [0.2, 0.0]])
    for bad in (1.5, True, 0, "1000"):
        with pytest.raises(ValueError, match="num_train_timesteps must be an integer ≥ 1"):
            ds.SCHEDULES.get("linear")(num_train_timesteps=bad)
    with pytest.raises(ValueError, match="num_train_timesteps must be an integer ≥ 1, got 2.5"):
        ds.SCHEDULES.get("vp-continuous")(num_train_timesteps=2.5)
