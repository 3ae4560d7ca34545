r"""Distances between sample sets.

Fréchet distance between Gaussians N(μ₁, Σ₁) and N(μ₂, Σ₂):

    d² = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2(Σ₁^{½} Σ₂ Σ₁^{½})^{½}),

computed in float64 through symmetric eigendecompositions (no complex sqrtm round-off).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..tensors import sqrt_psd

__all__ = ["frechet_distance", "gaussian_stats", "sliced_wasserstein", "sliced_wasserstein_to", "quantiles"]


def gaussian_stats(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and (unbiased) covariance of features [N, D], float64."""
    f = features.reshape(features.shape[0], -1).to(torch.float64)
    if f.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors, got {f.shape[0]}")
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """d² = ‖μ₁−μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^{½} Σ₂ Σ₁^{½})^{½}."""
    mu1, mu2, s1, s2 = (torch.as_tensor(a, dtype=torch.float64) for a in (mu1, mu2, sigma1, sigma2))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.numel(), mu1.numel()):
        raise ValueError(
            f"shapes do not match: μ {tuple(mu1.shape)} / {tuple(mu2.shape)}, Σ {tuple(s1.shape)} / {tuple(s2.shape)}"
        )
    r = sqrt_psd(s1)
    cross = torch.linalg.eigvalsh((r @ s2 @ r + (r @ s2 @ r).T) / 2).clamp_min(0).sqrt().sum()
    return float((mu1 - mu2).pow(2).sum() + s1.trace() + s2.trace() - 2 * cross)


def sliced_wasserstein(x: Tensor, y: Tensor, projections: int = 128, seed: int = 0) -> float:
    """SW₂ between two point sets: √(mean over random unit directions θ of W₂²(θᵀx, θᵀy)), quantiles matched."""
    return sliced_wasserstein_to(y, projections, seed)(x)


def sliced_wasserstein_to(y: Tensor, projections: int = 128, seed: int = 0) -> Callable[[Tensor], float]:
    """x ↦ SW₂(x, y) for a fixed y, whose projections' quantiles are computed once per quantile count."""
    y = y.reshape(y.shape[0], -1).to(torch.float64)
    theta = torch.randn(y.shape[1], projections, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    theta /= theta.norm(dim=0, keepdim=True)
    py_of: dict[int, tuple[Tensor, Tensor]] = {}

    def distance(x: Tensor) -> float:
        x = x.reshape(x.shape[0], -1).to(torch.float64)
        if x.shape[1] != y.shape[1]:
            raise ValueError(f"dimensions differ: {x.shape[1]} and {y.shape[1]}")
        m = max(x.shape[0], y.shape[0])
        if m not in py_of:
            q = torch.linspace(0, 1, m, dtype=torch.float64)
            py_of[m] = q, quantiles(y @ theta, q)
        q, py = py_of[m]
        return float((quantiles(x @ theta, q) - py).pow(2).mean().sqrt())

    return distance


def quantiles(v: Tensor, q: Tensor) -> Tensor:
    """Column quantiles of v at levels q, linearly interpolated (torch.quantile's rule, a sort shared by all q)."""
    s = v.sort(dim=0).values
    pos = q * (v.shape[0] - 1)
    lo = pos.long()
    return torch.lerp(s[lo], s[(lo + 1).clamp(max=v.shape[0] - 1)], (pos - lo).unsqueeze(1))
