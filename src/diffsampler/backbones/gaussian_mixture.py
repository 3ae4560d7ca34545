r"""The exact ε of a Gaussian-mixture data distribution: ground truth for sampler quality.

Data p_0 = Σ_k w_k N(μ_k, diag(v_k)). Under the VP forward process
p_t = Σ_k w_k N(√ᾱ μ_k, C_k) with C_k = ᾱ·diag(v_k) + (1−ᾱ)I, so

    ∇log p_t(x) = −Σ_k r_k(x)·C_k⁻¹(x − √ᾱ μ_k),   r_k ∝ w_k N(x; √ᾱ μ_k, C_k),
    ε(x, t)     = −√(1−ᾱ)·∇log p_t(x),

finite at every t ∈ [0, 1]. With ``class_labels`` y, the sum runs over component y only: the
exact class-conditional ε; the null label K (one past the last component) means no label.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import Tensor

from ..schedules import Schedule
from ..tensors import check_labels
from .base import Backbone

__all__ = ["GaussianMixture"]


class GaussianMixture(Backbone):
    """Exact ε of Σ_k w_k N(μ_k, diag(v_k)) in any dimension (isotropic or diagonal covariances)."""

    def __init__(self, means: Tensor | Sequence[Sequence[float]], weights: Tensor | Sequence[float] | None = None,
                 variances: float | Tensor | Sequence[Any] = 1.0, schedule: Schedule | None = None) -> None:
        mu = torch.as_tensor(means, dtype=torch.float64)
        if mu.dim() != 2:
            raise ValueError(f"means must have shape [K, D], got {tuple(mu.shape)}")
        k, d = mu.shape
        w = torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None else \
            torch.as_tensor(weights, dtype=torch.float64)
        if w.shape != (k,) or torch.any(w <= 0):
            raise ValueError(f"weights must be {k} positive numbers, got {w.tolist()}")
        v = torch.as_tensor(variances, dtype=torch.float64)
        if v.dim() == 1:
            v = v[:, None]
        v = v.expand(k, d).clone() if v.dim() < 2 or v.shape[1] == 1 else v
        if v.shape != (k, d) or torch.any(v <= 0):
            raise ValueError(f"variances must be positive: a number, [K] or [K, D] = [{k}, {d}]")
        self.means, self.weights, self.variances = mu, w / w.sum(), v
        self.schedule = schedule

    @property
    def null_class_label(self) -> int:
        """The label that means "unconditional" (for classifier-free guidance): K."""
        return self.num_components

    @property
    def num_classes(self) -> int:
        """One class per component."""
        return self.num_components

    @property
    def sample_shape(self) -> tuple[int]:
        return (self.dim,)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    def _log_resp_and_score(self, x: Tensor, alpha_bar: Tensor,
                            class_labels: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Per-component log w_k N(x; √ᾱμ_k, C_k) [B, K], the score [B, D] and the responsibilities."""
        dev = x.device
        a = alpha_bar.to(dev)[:, None, None]
        cov = a * self.variances.to(dev) + (1 - a)  # [B, K, D]
        diff = x[:, None, :] - a.sqrt() * self.means.to(dev)
        logn = -0.5 * ((diff**2 / cov) + torch.log(2 * math.pi * cov)).sum(-1)
        logits = self.weights.to(dev).log() + logn
        if class_labels is not None:
            y = check_labels(class_labels, x.shape[0], self.num_components, self.num_components, dev)
            keep = torch.nn.functional.one_hot(y, self.num_components + 1).bool()[:, :-1]
            keep |= (y == self.num_components)[:, None]
            logits = logits.masked_fill(~keep, -math.inf)
        r = torch.softmax(logits, dim=1)
        score = -(r[:, :, None] * diff / cov).sum(1)
        return logits, score, r

    def eps(self, x: Tensor, t: Tensor, schedule: Schedule, class_labels: Tensor | None = None,
            **cond: Any) -> Tensor:
        flat = x.reshape(x.shape[0], -1).to(torch.float64)
        if flat.shape[1] != self.dim:
            raise ValueError(f"x has {flat.shape[1]} features per sample; the mixture has dimension {self.dim}")
        la = schedule.log_alpha_bar(t).to(x.device)
        _, score, _ = self._log_resp_and_score(flat, la.exp(), class_labels)
        eps = -(-torch.expm1(la)).sqrt()[:, None] * score
        return eps.to(x.dtype).reshape(x.shape)

    def log_prob(self, x: Tensor, alpha_bar: float = 1.0) -> Tensor:
        """log p_t(x) where ᾱ(t) = ``alpha_bar`` (the data density at 1)."""
        flat = x.reshape(x.shape[0], -1).to(torch.float64)
        logits, _, _ = self._log_resp_and_score(flat, torch.full((flat.shape[0],), float(alpha_bar),
                                                                 dtype=torch.float64), None)
        return torch.logsumexp(logits, dim=1)

    def posterior(self, x: Tensor) -> Tensor:
        """Component responsibilities p(k | x) of data points x [B, K]."""
        flat = x.reshape(x.shape[0], -1).to(torch.float64)
        return self._log_resp_and_score(flat, torch.ones(flat.shape[0], dtype=torch.float64), None)[2]

    def mean(self) -> Tensor:
        """E[x_0] = Σ w_k μ_k."""
        return self.weights @ self.means

    def covariance(self) -> Tensor:
        """Cov[x_0] = Σ w_k (diag(v_k) + μ_k μ_kᵀ) − E[x]E[x]ᵀ."""
        m = self.mean()
        second = torch.einsum("k,ki,kj->ij", self.weights, self.means, self.means) + \
            torch.diag(self.weights @ self.variances)
        return second - torch.outer(m, m)

    def sample_data(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """n exact draws from p_0 and their component labels."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, dtype=torch.float64, generator=generator)
        return self.means[k] + self.variances[k].sqrt() * z, k
