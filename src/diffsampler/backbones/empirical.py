r"""The exact ε of a finite data set: the optimal denoiser of its empirical distribution.

For p_0 = (1/N)·Σ_n δ(x − x_n), p_t = (1/N)·Σ_n N(√ᾱ x_n, (1−ᾱ)I) (in VP coordinates; another
family's x is first divided by its scale s(t)), and

    x̂_0(x, t) = Σ_n w_n x_n,   w = softmax_n(−‖x − √ᾱ x_n‖² / (2(1−ᾱ))),
    ε(x, t)   = (x − √ᾱ·x̂_0)/√(1−ᾱ).

A zero-training ground truth for image-sized benchmarks: its exact samples are the data
points themselves. With ``class_labels`` the softmax runs over that class's points only; the
null label (one past the largest label) means no label.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..schedules import Schedule
from ..tensors import check_labels
from .base import Backbone

__all__ = ["Empirical"]


class Empirical(Backbone):
    """Exact ε of the empirical distribution of a data set (softmax-weighted average of its points)."""

    def __init__(self, data: Tensor, labels: Tensor | None = None, schedule: Schedule | None = None) -> None:
        data = torch.as_tensor(data)
        if data.dim() < 2 or data.shape[0] < 1:
            raise ValueError(f"data must be [N, …] with N ≥ 1, got shape {tuple(data.shape)}")
        self.data = data.reshape(data.shape[0], -1).to(torch.float64)
        self.item_shape = tuple(data.shape[1:])
        self.labels = None if labels is None else torch.as_tensor(labels).long().reshape(-1)
        if self.labels is not None and self.labels.numel() != data.shape[0]:
            raise ValueError(f"got {self.labels.numel()} labels for {data.shape[0]} data points")
        self._sq = self.data.pow(2).sum(1)
        self.null_class_label = None if self.labels is None else int(self.labels.max()) + 1
        self.num_classes = self.null_class_label
        self.sample_shape = self.item_shape
        self.schedule = schedule

    def denoise(self, x: Tensor, alpha_bar: Tensor, class_labels: Tensor | None = None) -> Tensor:
        """x̂_0 = E[x_0 | x_t] under the empirical distribution, per sample; ᾱ has shape [B]."""
        flat = x.reshape(x.shape[0], -1).to(torch.float64)
        if flat.shape[1] != self.data.shape[1]:
            raise ValueError(f"x has {flat.shape[1]} features per sample; the data have {self.data.shape[1]}")
        a = alpha_bar.to(torch.float64).reshape(-1, 1)
        d2 = flat.pow(2).sum(1, keepdim=True) - 2 * a.sqrt() * (flat @ self.data.T) + a * self._sq
        logits = -d2 / (2 * (1 - a).clamp_min(1e-20))
        if class_labels is not None:
            if self.labels is None:
                raise ValueError("class_labels given, but this empirical backbone has no labels")
            y = check_labels(class_labels, flat.shape[0], self.null_class_label, self.null_class_label)
            other = (self.labels[None, :] != y[:, None]) & (y[:, None] != self.null_class_label)
            logits = logits.masked_fill(other, -torch.inf)
        return torch.softmax(logits, dim=1) @ self.data

    def eps(self, x: Tensor, t: Tensor, schedule: Schedule, class_labels: Tensor | None = None, **cond: Any) -> Tensor:
        """ε at the model's x = s·x_vp (any schedule family), from x̂_0 in the VP coordinates."""
        la = schedule.log_alpha_bar(t)
        flat = x.reshape(x.shape[0], -1).to(torch.float64) / schedule.scale(t)[:, None]
        x0 = self.denoise(flat, la.exp(), class_labels)
        a = la.exp()[:, None]
        eps = (flat - a.sqrt() * x0) / (1 - a).clamp_min(1e-20).sqrt()
        return eps.to(x.dtype).reshape(x.shape)

    def denoised(
        self, x: Tensor, t: Tensor, schedule: Schedule, class_labels: Tensor | None = None, **cond: Any
    ) -> Tensor:
        """x̂_0 at the model's x, defined at zero SNR too (there the data's mean)."""
        flat = x.reshape(x.shape[0], -1).to(torch.float64) / schedule.scale(t)[:, None]
        return self.denoise(flat, schedule.alpha_bar(t), class_labels).to(x.dtype).reshape(x.shape)
