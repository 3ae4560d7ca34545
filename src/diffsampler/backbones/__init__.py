"""Backbones: adapters from models (and exact analytic targets) to ε-functions."""

from __future__ import annotations

from typing import Any

from ..errors import ModelLoadError
from ..registry import Registry
from .base import PREDICTION_TYPES, Backbone, CallableBackbone, convert, to_epsilon
from .diffusers_unet import DiffusersBackbone
from .empirical import Empirical
from .gaussian_mixture import GaussianMixture
from .pipeline import TextToImage

BACKBONES: Registry[type[Backbone]] = Registry("backbone", "backbones")
BACKBONES.register("callable", CallableBackbone)
BACKBONES.register("diffusers", DiffusersBackbone)
BACKBONES.register("empirical", Empirical)
BACKBONES.register("gaussian-mixture", GaussianMixture)


def as_backbone(model: Any, prediction_type: str | None = None) -> Backbone:
    """A ``Backbone`` as is, or any callable ``model(x, t)`` wrapped in ``CallableBackbone``."""
    if isinstance(model, Backbone):
        if prediction_type not in (None, "epsilon"):
            raise ValueError("prediction_type applies to plain callables; this backbone already gives ε")
        return model
    return CallableBackbone(model, prediction_type or "epsilon")


__all__ = [
    "BACKBONES",
    "Backbone",
    "CallableBackbone",
    "DiffusersBackbone",
    "TextToImage",
    "Empirical",
    "GaussianMixture",
    "ModelLoadError",
    "PREDICTION_TYPES",
    "as_backbone",
    "to_epsilon",
    "convert",
]
