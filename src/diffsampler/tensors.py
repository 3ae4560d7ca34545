"""Tensor helpers every layer shares; this module imports nothing of the package."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["bcast", "times_like", "check_labels"]


def bcast(v: Tensor, x: Tensor) -> Tensor:
    """A per-sample [B] coefficient shaped to broadcast against x, in x's dtype."""
    return v.to(device=x.device, dtype=x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


def times_like(t: float | Tensor, x: Tensor) -> Tensor:
    """t as a float64 tensor of shape [B] on x's device."""
    return torch.as_tensor(t, dtype=torch.float64, device=x.device).expand(x.shape[0]).clone()


def check_labels(labels: Any, batch: int, num_classes: int | None, null_label: int | None = None,
                 device: torch.device | str | None = None) -> Tensor:
    """Labels [B] (one int, or one per sample) in [0, num_classes) (any if None), or the null label."""
    y = torch.as_tensor(labels, device=device).long().reshape(-1)
    if y.numel() not in (1, batch):
        raise ValueError(f"got {y.numel()} labels for a batch of {batch}")
    if num_classes is None:
        return y.expand(batch)
    bad = (y < 0) | (y >= num_classes)
    if null_label is not None:
        bad &= y != null_label
    if bool(bad.any()):
        null = f" (or the null label {null_label})" if null_label is not None else ""
        raise ValueError(f"class_labels must lie in [0, {num_classes}){null}, got {sorted(set(y[bad].tolist()))}")
    return y.expand(batch)
