"""Backbone adapters: prediction-type conversion, the exact mixture ε against autograd."""

from __future__ import annotations

import pytest
import torch

import diffsampler as ds
from diffsampler.backbones import CallableBackbone


def _times(n: int) -> torch.Tensor:
    return torch.linspace(0.02, 0.98, n, dtype=torch.float64)


@pytest.mark.parametrize("schedule", ["linear", "cosine", "vp-continuous", "sigmoid-alphabar"])
def test_mixture_eps_is_minus_std_times_autograd_score(mixture, schedule: str) -> None:
    s = ds.SCHEDULES.get(schedule)()
    t = _times(7)
    x = torch.randn(7, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 3
    x.requires_grad_(True)
    logp = torch.stack([mixture.log_prob(x[i : i + 1], s.alpha_bar(t[i]).item())[0] for i in range(7)])
    (score,) = torch.autograd.grad(logp.sum(), x)
    expected = -s.std(t)[:, None] * score
    torch.testing.assert_close(mixture.eps(x.detach(), t, s), expected, rtol=1e-10, atol=1e-10)


def test_class_conditional_mixture_eps_is_single_gaussian(mixture) -> None:
    s = ds.SCHEDULES.get("linear")()
    t, x = _times(5), torch.randn(5, 2, dtype=torch.float64)
    one = ds.GaussianMixture(means=mixture.means[1:2], variances=mixture.variances[1:2])
    torch.testing.assert_close(mixture.eps(x, t, s, class_labels=torch.full((5,), 1)), one.eps(x, t, s))


@pytest.mark.parametrize("prediction_type", ["sample", "v_prediction"])
def test_prediction_types_convert_to_eps(mixture, prediction_type: str) -> None:
    s = ds.SCHEDULES.get("linear")()

    def model(x: torch.Tensor, t_index: torch.Tensor) -> torch.Tensor:
        t = s.index_to_t(t_index)  # the adapter hands over training indices
        eps = mixture.eps(x, t, s)
        a, std = s.alpha(t)[:, None], s.std(t)[:, None]
        x0 = (x - std * eps) / a
        return x0 if prediction_type == "sample" else a * eps - std * x0

    grid = s.index_to_t(torch.tensor([999, 700, 300, 10]))
    x = torch.randn(4, 2, dtype=torch.float64)
    got = CallableBackbone(model, prediction_type).eps(x, grid, s)
    torch.testing.assert_close(got, mixture.eps(x, grid, s), rtol=1e-9, atol=1e-9)
    a = ds.sample(model, schedule=s, prediction_type=prediction_type, steps=8, x_T=x)
    b = ds.sample(mixture, schedule=s, steps=8, x_T=x)
    torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8)


def test_callable_gets_training_index_scale() -> None:
    seen: list[torch.Tensor] = []

    def model(x, t):
        seen.append(t.clone())
        return torch.zeros_like(x)

    ds.sample(model, schedule="linear", sampler="ddim", steps=4, spacing="leading", shape=(3, 1), seed=0)
    assert [v.tolist() for v in seen] == [[750.0] * 3, [500.0] * 3, [250.0] * 3, [0.0] * 3]
    seen.clear()
    ds.sample(model, schedule="vp-continuous", sampler="ddim", steps=2, spacing="uniform", shape=(1, 1), seed=0)
    assert [v.tolist() for v in seen] == [[999.0], [499.5]]


def test_mixture_moments(mixture) -> None:
    x, k = mixture.sample_data(200_000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(x.mean(0), mixture.mean(), atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), mixture.covariance(), atol=0.05, rtol=0)
    assert torch.equal(mixture.posterior(x[:1000]).argmax(1), k[:1000])
