"""Sample quality on an exact Gaussian-mixture target.

For n samples each statistic is compared with the truth at about 4–5 standard errors of the
estimate: a component's weight (binomial SE √(w(1−w)/n)), its mean (SE √(v/n_k) per coordinate)
and its variance (SE v·√(2/(n_k−1))), components assigned by the exact posterior. The variance
check also rules out collapsed samples. Seeds are fixed, so the test is deterministic.
"""

from __future__ import annotations

import pytest
import torch

import diffsampler as ds

N = 6000


@pytest.mark.parametrize(
    "sampler,options",
    [
        ("ddpm", {"steps": 1000}),
        ("euler-maruyama", {"steps": 1000}),
        ("pf-ode", {"method": "rk45", "rtol": 1e-5, "atol": 1e-5}),
        ("ddim", {"steps": 100}),
        ("dpm-solver++", {"steps": 25}),
        ("euler-ancestral", {"steps": 500}),
        ("heun", {"steps": 50}),
        ("heun", {"steps": 200, "s_churn": 10.0}),
        ("dpm-solver++-sde", {"steps": 200}),
        ("dpm-solver++-sde", {"steps": 200, "order": 3}),
        ("dpm-solver++-2s", {"steps": 200, "eta": 1.0}),
        ("restart", {"steps": 30, "restarts": 2, "restart_steps": 5, "restart_max": 1.0}),
        ("unipc", {"steps": 25}),
        ("deis", {"steps": 25}),
        ("ipndm", {"steps": 25}),
        ("plms", {"steps": 25}),
        ("dpm-solver++-singlestep", {"steps": 80}),
    ],
)
def test_mixture_statistics(mixture, sampler: str, options: dict) -> None:
    gen = torch.Generator().manual_seed(3)  # one stream for the batch: per-sample streams are slow for 6000 tiny rows
    x = ds.sample(
        mixture, schedule="linear", sampler=sampler, shape=(N, 2), generator=gen, dtype=torch.float64, **options
    )
    assert_mixture(mixture, x)


def assert_mixture(mixture: ds.GaussianMixture, x: torch.Tensor) -> None:
    """N samples x match the mixture's weights, means and variances (and its covariance)."""
    assert torch.isfinite(x).all()
    label = mixture.posterior(x).argmax(1)
    for k in range(mixture.num_components):
        w, mu, var = mixture.weights[k].item(), mixture.means[k], mixture.variances[k]
        xk = x[label == k]
        nk = xk.shape[0]
        assert abs(nk / N - w) < 4.5 * (w * (1 - w) / N) ** 0.5, f"component {k} weight {nk / N:.3f} vs {w}"
        assert torch.all((xk.mean(0) - mu).abs() < 4.5 * (var / nk).sqrt()), f"component {k} mean {xk.mean(0)}"
        v_hat = xk.var(0)
        assert torch.all((v_hat - var).abs() < 5 * var * (2 / (nk - 1)) ** 0.5), f"component {k} var {v_hat} vs {var}"
    cov = torch.cov(x.T)
    assert torch.all((x.mean(0) - mixture.mean()).abs() < 4.5 * (mixture.covariance().diag() / N).sqrt())
    torch.testing.assert_close(cov, mixture.covariance(), rtol=0.08, atol=0.08)


def test_tolerance_catches_a_wrong_sampler(mixture) -> None:
    """The statistics above reject samples from a mis-specified schedule (a check that can fail)."""
    wrong = ds.sample(
        mixture,
        schedule="linear",
        sampler="ddim",
        steps=3,
        shape=(N, 2),
        generator=torch.Generator().manual_seed(3),
        dtype=torch.float64,
    )
    label = mixture.posterior(wrong).argmax(1)
    var = torch.stack([wrong[label == k].var(0) for k in range(3)])
    assert torch.any((var - mixture.variances).abs() > 5 * mixture.variances * (2 / (N / 5)) ** 0.5)
