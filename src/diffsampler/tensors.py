"""Tensor helpers every layer shares; this module imports nothing of the package."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Any

import torch
from torch import Tensor

__all__ = ["bcast", "times_like", "check_labels", "retain_freed_memory", "sqrt_psd"]
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def bcast(v: Tensor, x: Tensor) -> Tensor:
    """A per-sample [B] coefficient shaped to broadcast against x, in x's dtype."""
    return v.to(device=x.device, dtype=x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


def sqrt_psd(m: Tensor) -> Tensor:
    """The symmetric square root of a positive semi-definite matrix, through eigh (negative round-off clamped)."""
    w, v = torch.linalg.eigh((m + m.T) / 2)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def times_like(t: float | Tensor, x: Tensor) -> Tensor:
    """t as a float64 tensor of shape [B] on x's device."""
    return torch.as_tensor(t, dtype=torch.float64, device=x.device).expand(x.shape[0]).clone()


def check_labels(
    labels: Any,
    batch: int,
    num_classes: int | None,
    null_label: int | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
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


def retain_freed_memory(limit: int = 1 << 30) -> bool:
    """Have glibc's malloc keep freed blocks below ``limit`` bytes for reuse rather than hand them back to the system.

    By default, blocks over 128 KiB (a network's activations) are mapped and unmapped at every call, and each
    page is faulted in again: keeping them made the digits model's CPU sampling 1.2× faster at batch 64 and 1.7× at
    batch 250 (benchmarks/allocator_cpu.py);
    the process then keeps its peak memory until it exits. Thresholds set through MALLOC_MMAP_THRESHOLD_ or
    MALLOC_TRIM_THRESHOLD_ are left alone. Returns whether it took effect (False off glibc).
    """
    if not sys.platform.startswith("linux") or {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"} & set(os.environ):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, limit)) and bool(mallopt(M_TRIM_THRESHOLD, limit))
