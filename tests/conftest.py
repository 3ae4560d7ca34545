"""Shared fixtures: small exact targets, a fixed nonlinear ε-model, k-diffusion's sampling module, registries
that a test may change."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

import pytest
import torch

import diffsampler as ds
from diffsampler.metrics import METRICS


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
    return ds.GaussianMixture(
        means=[[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]],
        weights=[0.5, 0.3, 0.2],
        variances=[[0.3, 0.5], [0.4, 0.2], [0.25, 0.25]],
    )


@pytest.fixture
def own_registries(monkeypatch) -> None:
    """What the test registers is gone after it: each registry's tables are copies for its duration."""
    for registry in (ds.SAMPLERS, ds.SPACINGS, ds.SCHEDULES, ds.GUIDANCE, ds.BACKBONES, METRICS):
        for attr in ("_items", "_origins", "_meta"):
            monkeypatch.setattr(registry, attr, dict(getattr(registry, attr)))


@pytest.fixture(scope="module")
def k_sampling():
    """k-diffusion's sampling module alone: its package __init__ and utils pull in torchvision and more,
    of which sampling.py uses one helper, append_dims (stubbed here exactly as k-diffusion writes it)."""
    root = importlib.util.find_spec("k_diffusion").submodule_search_locations[0]
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "k_diffusion" or k.startswith("k_diffusion.")}
    package, utils = types.ModuleType("k_diffusion"), types.ModuleType("k_diffusion.utils")
    package.__path__ = [root]
    utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
    package.utils = utils
    sys.modules.update({"k_diffusion": package, "k_diffusion.utils": utils})
    try:
        yield importlib.import_module("k_diffusion.sampling")
    finally:
        for k in [k for k in sys.modules if k == "k_diffusion" or k.startswith("k_diffusion.")]:
            del sys.modules[k]
        sys.modules.update(saved)
