"""ipndm-v: variable-step Adams–Bashforth weights (exact on polynomials), iPNDM on equal steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import diffsampler as ds
from diffsampler.samplers.ipndm import adams_bashforth
from diffsampler.samplers.pndm import AB_WEIGHTS
from diffsampler.schedules.sigma_tools import times_from_sigmas

F64 = torch.float64


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_weights_integrate_polynomials_below_their_order_exactly(k: int) -> None:
    rng = np.random.default_rng(k)
    nodes = np.sort(rng.uniform(0.5, 10.0, k))  # σ_i (the smallest) first, older levels above it
    start, end = nodes[0], nodes[0] * rng.uniform(0.2, 0.9)
    w = adams_bashforth(nodes.tolist(), start, end)
    for degree in range(k):
        exact = (end ** (degree + 1) - start ** (degree + 1)) / (degree + 1)
        assert sum(wj * n**degree for wj, n in zip(w, nodes)) * (end - start) == pytest.approx(exact, rel=1e-10)
    np.testing.assert_allclose(adams_bashforth([2.0 + j for j in range(k)], 2.0, 1.0), AB_WEIGHTS[k - 1], rtol=1e-12)


def test_on_equal_sigma_steps_it_is_ipndm(mixture) -> None:
    """A grid of equal σ steps ending above σ = 0 (where ipndm-v's Euler step into 0 does not arise)."""
    s = ds.SCHEDULES.get("linear")()
    grid = times_from_sigmas(s, torch.linspace(20.0, 0.5, 9, dtype=F64))
    x_T = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    a = ds.sample(mixture, schedule=s, sampler="ipndm-v", grid=grid, x_T=x_T)
    b = ds.sample(mixture, schedule=s, sampler="ipndm", grid=grid, x_T=x_T)
    torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11)


def test_after_its_euler_start_it_integrates_a_linear_eps_exactly_on_uneven_steps() -> None:
    """dy/dσ = σ on Karras' grid: order 2's only error is its first (Euler) step's; iPNDM's fixed weights err more."""
    s = ds.SCHEDULES.get("linear")()
    grid = ds.make_grid(s, 10, "karras")[:-1]
    sig = s.sigma(grid).tolist()

    def eps(x, t):
        return torch.full_like(x, s.sigma(t[:1]).item())

    def error(name: str) -> float:
        out = ds.SAMPLERS.get(name)(eps, torch.zeros(1, 1, dtype=F64), grid, s, noise_sampler=torch.zeros_like, order=2)
        return out.item() * (1 + sig[-1] ** 2) ** 0.5 - (sig[-1] ** 2 - sig[0] ** 2) / 2

    first = (sig[1] - sig[0]) * sig[0] - (sig[1] ** 2 - sig[0] ** 2) / 2
    assert error("ipndm-v") == pytest.approx(first, rel=1e-9)
    assert abs(error("ipndm") - first) > 1e-3 * abs(first)
