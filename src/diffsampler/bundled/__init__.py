"""Pretrained models shipped inside the package (safetensors, diffusers layout, each with a model card).

``digits``: the default model, a class-conditional ε-model of 28×28 MNIST digits (null label 10,
so one network serves conditional, unconditional and classifier-free guided sampling).
``digits-weak``: the same training run's EMA weights at step 1500 of 5000, the weaker model
autoguidance guides ``digits`` with. ``digits-classifier``: ``noisy/``, p(y | x_t, t) for
classifier guidance, and ``clean/``, whose penultimate features define the Fréchet distance of
this domain (``fd-digits``), with the reference statistics of the held-out digits in ``fd_reference.safetensors``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..backbones.diffusers_unet import DiffusersBackbone
from ..errors import ModelLoadError

__all__ = ["BUNDLED", "DEFAULT_MODEL", "model_path", "load_model", "load_classifier", "fd_reference"]

HERE = Path(__file__).parent
BUNDLED: dict[str, str] = {
    "digits": "class-conditional 28×28 MNIST ε-model (UNet2DModel, 1.1 M parameters)",
    "digits-weak": "the digits model's training run at step 1500 of 5000 (autoguidance's weak model)",
    "digits-classifier": "noise-conditional and clean digit classifiers (fd-digits features)",
}
DEFAULT_MODEL = "digits"


def model_path(name: str) -> Path:
    """The folder of a bundled model."""
    if name not in BUNDLED:
        raise ModelLoadError(f"unknown bundled model {name!r}; known: {', '.join(BUNDLED)}")
    return HERE / name


def load_model(model: str | Path = DEFAULT_MODEL, **kwargs: Any) -> DiffusersBackbone:
    """A bundled model by name, or any local folder, file or hub id (see ``DiffusersBackbone.from_pretrained``)."""
    source = model_path(model) if isinstance(model, str) and model in BUNDLED else model
    return DiffusersBackbone.from_pretrained(source, **kwargs)


def load_classifier(kind: str = "noisy") -> torch.nn.Module:
    """The bundled digit classifier: ``noisy`` p(y | x_t, t) or ``clean``."""
    from ..classifier import DigitClassifier

    if kind not in ("noisy", "clean"):
        raise ValueError(f"unknown classifier kind {kind!r}; known: noisy, clean")
    return DigitClassifier.from_pretrained(model_path("digits-classifier") / kind)


def fd_reference() -> tuple[torch.Tensor, torch.Tensor]:
    """μ and Σ of the clean classifier's features on the 500 held-out digits."""
    from safetensors.torch import load_file

    stats = load_file(str(model_path("digits-classifier") / "fd_reference.safetensors"))
    return stats["mu"], stats["sigma"]
