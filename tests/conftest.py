"""Shared fixtures: small exact targets and a fixed nonlinear ε-model."""

from __future__ import annotations

import pytest
import torch

import diffsampler as ds


class TanhEps(torch.nn.Module):
    """A fixed nonlinear ε-model on the training-index scale: tanh(x·W + t/T·b) (shape [B, D])."""

    def __init__(self, dim: int = 6, seed: int = 0, T: int = 1000) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(dim, dim, generator=g, dtype=torch.float64) / dim**0.5
        self.b = torch.randn(dim, generator=g, dtype=torch.float64)
        self.T = T

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x.dtype).reshape(-1, 1)
        return torch.tanh(x @ self.W.to(x.dtype) + t / self.T * self.b.to(x.dtype))


@pytest.fixture
def tanh_eps() -> TanhEps:
    return TanhEps()


@pytest.fixture
def mixture() -> ds.GaussianMixture:
    """Three well-separated 2-D components with unequal weights and diagonal covariances."""
    return ds.GaussianMixture(means=[[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]], weights=[0.5, 0.3, 0.2],
                              variances=[[0.3, 0.5], [0.4, 0.2], [0.25, 0.25]])
