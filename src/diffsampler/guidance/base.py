"""Helpers shared by guidance methods: argument checks and the guidance interval."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

__all__ = ["check_scale", "check_interval", "inside", "labels_of"]


def check_scale(name: str, scale: float) -> float:
    """A guidance scale: a finite number ≥ 0."""
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not 0 <= scale < math.inf:
        raise ValueError(f"{name} scale must be a finite number ≥ 0, got {scale!r}")
    return float(scale)


def check_interval(interval: tuple[float, float] | None) -> tuple[float, float] | None:
    if interval is None:
        return None
    lo, hi = (float(v) for v in interval)
    if not 0 <= lo < hi <= 1:
        raise ValueError(f"interval must be (lo, hi) with 0 ≤ lo < hi ≤ 1 in continuous time, got {interval!r}")
    return lo, hi


def inside(t: Tensor, interval: tuple[float, float] | None) -> Tensor:
    """Per-sample mask of times where guidance applies (Kynkäänniemi et al. 2024: lo < t ≤ hi)."""
    if interval is None:
        return torch.ones_like(t, dtype=torch.bool)
    return (t > interval[0]) & (t <= interval[1])


def labels_of(name: str, cond: dict[str, Any], key: str, batch: int, device: torch.device) -> Tensor:
    """Per-sample labels [B] from ``cond[key]`` (a tensor or one int), or a clear error."""
    if cond.get(key) is None:
        raise ValueError(f"{name} guidance needs labels: pass cond={{{key!r}: labels}} (one int or one per sample)")
    y = cond[key]
    y = torch.as_tensor(y, device=device).long().reshape(-1)
    if y.numel() not in (1, batch):
        raise ValueError(f"got {y.numel()} labels for a batch of {batch}")
    return y.expand(batch)
