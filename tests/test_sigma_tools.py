"""Sigma tools: σ ↔ t on a schedule, split, concatenate, set first/last, extend; closed forms and round trips."""

from __future__ import annotations

import pytest
import torch

import diffsampler as ds
from diffsampler.schedules.sigma_tools import (
    concatenate,
    extend,
    set_first,
    set_last,
    sigmas_from_times,
    split,
    times_from_sigmas,
)

F64 = torch.float64


@pytest.mark.parametrize("name", ["linear", "cosine", "scaled-linear"])
def test_times_from_sigmas_inverts_sigma(name: str) -> None:
    s = ds.SCHEDULES.get(name)()
    grid = ds.make_grid(s, 10, "karras")
    sig = sigmas_from_times(s, grid)
    assert sig[-1].item() == 0.0
    torch.testing.assert_close(times_from_sigmas(s, sig), grid, rtol=0, atol=1e-9)
    torch.testing.assert_close(sigmas_from_times(s, times_from_sigmas(s, sig)), sig, rtol=1e-9, atol=0)


def test_a_sigma_list_walks_like_its_spacing(mixture) -> None:
    """The karras σ list handed as sigmas gives the karras spacing's samples (to the σ → t round trip)."""
    s = ds.SCHEDULES.get("linear")()
    x_T = torch.randn(32, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    sig = sigmas_from_times(s, ds.make_grid(s, 6, "karras"))
    a = ds.sample(mixture, schedule=s, sampler="dpm-solver++", grid=times_from_sigmas(s, sig), x_T=x_T)
    b = ds.sample(mixture, schedule=s, sampler="dpm-solver++", steps=6, spacing="karras", x_T=x_T)
    torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-7)


def test_split_and_concatenate_are_inverse() -> None:
    g = torch.tensor([1.0, 0.8, 0.5, 0.3, 0.1, 0.0], dtype=F64)
    for k in range(1, 5):
        high, low = split(g, k)
        assert high.numel() == k + 1 and low[0] == high[-1] == g[k]
        assert torch.equal(concatenate(high, low), g)
    assert torch.equal(concatenate([1.0, 0.5], [0.4, 0.0]), torch.tensor([1.0, 0.5, 0.4, 0.0], dtype=F64))


def test_set_first_last_and_extend() -> None:
    g = torch.tensor([1.0, 0.5, 0.2, 0.0], dtype=F64)
    assert set_first(g, 0.9).tolist() == [0.9, 0.5, 0.2, 0.0]
    assert set_last(g, 0.05).tolist() == [1.0, 0.5, 0.2, 0.05]
    assert torch.equal(extend(g, 0), g)
    assert extend(g, 1).tolist() == pytest.approx([1.0, 0.75, 0.5, 0.35, 0.2, 0.1, 0.0], abs=1e-15)
    assert extend(g, 3).numel() == 3 * 4 + 1


def test_errors_name_the_bad_value() -> None:
    s = ds.SCHEDULES.get("linear")()
    g = [1.0, 0.5, 0.0]
    with pytest.raises(ValueError, match="sigma 500 is above this schedule's σ_max = 157.4"):
        times_from_sigmas(s, [500.0, 1.0, 0.0])
    with pytest.raises(ValueError, match=r"sigmas must decrease strictly, got \[3.0, 4.0, 0.0\]"):
        times_from_sigmas(s, [3.0, 4.0, 0.0])
    with pytest.raises(ValueError, match="split at step 2: must be between 1 and 1 for 2 steps"):
        split(g, 2)
    with pytest.raises(ValueError, match="second starts at 0.7, above first's last level 0.5"):
        concatenate([1.0, 0.5], [0.7, 0.0])
    with pytest.raises(ValueError, match="levels with first = 0.4 must decrease strictly"):
        set_first(g, 0.4)
    with pytest.raises(ValueError, match="between must be an integer ≥ 0, got -1"):
        extend(g, -1)
