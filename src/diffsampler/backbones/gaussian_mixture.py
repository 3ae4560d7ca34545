r"""The exact ε of a Gaussian-mixture data distribution: ground truth for sampler quality.

Data p_0 = Σ_k w_k N(μ_k, diag(v_k)). Under the forward process x_t = a·x_0 + b·ε of any schedule
(a, b its ``signal`` and ``noise``; √ᾱ and √(1−ᾱ) for VP) p_t = Σ_k w_k N(a μ_k, C_k) with
C_k = a²·diag(v_k) + b²·I, so

    ∇log p_t(x) = −Σ_k r_k(x)·C_k⁻¹(x − a μ_k),   r_k ∝ w_k N(x; a μ_k, C_k),
    ε(x, t)     = −b·∇log p_t(x),
    E[x_0 | x]  = Σ_k r_k(x)·(μ_k + a·diag(v_k)·C_k⁻¹(x − a μ_k)),

finite at every t ∈ [0, 1], zero SNR (a = 0) included. With ``class_labels`` y, the sum runs over
component y only: the exact class-conditional ε; the null label K (one past the last component) means no label.
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

    def __init__(
        self,
        means: Tensor | Sequence[Sequence[float]],
        weights: Tensor | Sequence[float] | None = None,
        variances: float | Tensor | Sequence[Any] = 1.0,
        schedule: Schedule | None = None,
    ) -> None:
        mu = torch.as_tensor(means, dtype=torch.float64)
        if mu.dim() != 2:
            raise ValueError(f"means must have shape [K, D], got {tuple(mu.shape)}")
        k, d = mu.shape
        w = (
            torch.full((k,), 1.0 / k, dtype=torch.float64)
            if weights is None
            else torch.as_tensor(weights, dtype=torch.float64)
        )
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

    def _posterior_terms(
        self, x: Tensor, a: Tensor, b2: Tensor, class_labels: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Per-component log w_k N(x; aμ_k, C_k) [B, K], responsibilities r [B, K], x − aμ_k and C_k [B, K, D]."""
        dev = x.device
        a, b2 = a.to(dev)[:, None, None], b2.to(dev)[:, None, None]
        cov = a * a * self.variances.to(dev) + b2  # [B, K, D]
        diff = x[:, None, :] - a * self.means.to(dev)
        logn = -0.5 * ((diff**2 / cov) + torch.log(2 * math.pi * cov)).sum(-1)
        logits = self.weights.to(dev).log() + logn
        if class_labels is not None:
            y = check_labels(class_labels, x.shape[0], self.num_components, self.num_components, dev)
            keep = torch.nn.functional.one_hot(y, self.num_components + 1).bool()[:, :-1]
            keep |= (y == self.num_components)[:, None]
            logits = logits.masked_fill(~keep, -math.inf)
        return logits, torch.softmax(logits, dim=1), diff, cov

    def _flat(self, x: Tensor) -> Tensor:
        flat = x.reshape(x.shape[0], -1).to(torch.float64)
        if flat.shape[1] != self.dim:
            raise ValueError(f"x has {flat.shape[1]} features per sample; the mixture has dimension {self.dim}")
        return flat

    def _scales(self, t: Tensor, schedule: Schedule, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(a, b², b) at t; for a VP schedule b² = 1 − ᾱ is taken as −expm1(log ᾱ), exact near t = 0."""
        if schedule.variance_preserving:
            la = schedule.log_alpha_bar(t).to(x.device)
            b2 = -torch.expm1(la)
            return (0.5 * la).exp(), b2, b2.sqrt()
        a, b = schedule.signal(t).to(x.device), schedule.noise(t).to(x.device)
        return a, b * b, b

    def eps(self, x: Tensor, t: Tensor, schedule: Schedule, class_labels: Tensor | None = None, **cond: Any) -> Tensor:
        flat = self._flat(x)
        a, b2, b = self._scales(t, schedule, x)
        _, r, diff, cov = self._posterior_terms(flat, a, b2, class_labels)
        eps = b[:, None] * (r[:, :, None] * diff / cov).sum(1)
        return eps.to(x.dtype).reshape(x.shape)

    def denoised(
        self, x: Tensor, t: Tensor, schedule: Schedule, class_labels: Tensor | None = None, **cond: Any
    ) -> Tensor:
        """E[x_0 | x_t]: the posterior mean, exact at zero SNR too (there Σ w_k μ_k)."""
        flat = self._flat(x)
        a, b2, _ = self._scales(t, schedule, x)
        _, r, diff, cov = self._posterior_terms(flat, a, b2, class_labels)
        comp = self.means.to(x.device) + a[:, None, None] * self.variances.to(x.device) * diff / cov
        return (r[:, :, None] * comp).sum(1).to(x.dtype).reshape(x.shape)

    def log_prob(self, x: Tensor, alpha_bar: float = 1.0) -> Tensor:
        """log p_t(x) where ᾱ(t) = ``alpha_bar`` (the data density at 1)."""
        flat = x.reshape(x.shape[0], -1).to(torch.float64)
        ab = torch.full((flat.shape[0],), float(alpha_bar), dtype=torch.float64)
        logits = self._posterior_terms(flat, ab.sqrt(), 1 - ab, None)[0]
        return torch.logsumexp(logits, dim=1)

    def posterior(self, x: Tensor) -> Tensor:
        """Component responsibilities p(k | x) of data points x [B, K]."""
        flat = x.reshape(x.shape[0], -1).to(torch.float64)
        one = torch.ones(flat.shape[0], dtype=torch.float64)
        return self._posterior_terms(flat, one, 1 - one, None)[1]

    def mean(self) -> Tensor:
        """E[x_0] = Σ w_k μ_k."""
        return self.weights @ self.means

    def covariance(self) -> Tensor:
        """Cov[x_0] = Σ w_k (diag(v_k) + μ_k μ_kᵀ) − E[x]E[x]ᵀ."""
        m = self.mean()
        second = torch.einsum("k,ki,kj->ij", self.weights, self.means, self.means) + torch.diag(
            self.weights @ self.variances
        )
        return second - torch.outer(m, m)

    def sample_data(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """n exact draws from p_0 and their component labels."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, dtype=torch.float64, generator=generator)
        return self.means[k] + self.variances[k].sqrt() * z, k
