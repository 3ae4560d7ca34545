"""What loading a diffusers model and a pipeline share: file names, JSON and weights reading, dtype casts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import ModelLoadError

__all__ = [
    "PICKLE_SUFFIXES",
    "UNET_CLASSES",
    "TRANSFORMERS",
    "EXTRA_CONFIG",
    "read_json",
    "first_line",
    "load_weights",
    "cast",
    "is_pipeline",
]

PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth")
UNET_CLASSES = ("UNet2DModel", "UNet2DConditionModel", "SD3Transformer2DModel")
TRANSFORMERS = ("SD3Transformer2DModel",)  # called with keywords: hidden_states, timestep, encoder_hidden_states, …
EXTRA_CONFIG = "diffsampler.json"  # null label, class names, clipping: what diffusers' configs do not hold


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object of settings, or a ModelLoadError naming the file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} must hold a JSON object of settings, got a {type(data).__name__}")
    return data


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type where it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_weights(path: Path, allow_pickle: bool) -> dict[str, Tensor]:
    """A state dict from safetensors, or from a pickle checkpoint (tensors only) where ``allow_pickle``."""
    if path.suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise ModelLoadError(
                f"{path} is a pickle checkpoint, which can run code when loaded; "
                "use a .safetensors file, or allow_pickle=True (--allow-pickle) if you trust it"
            )
        import pickle

        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:  # torch's message suggests a code-running load: never pass it on
            raise ModelLoadError(
                f"refused to load {path}: it holds objects other than tensors, which could run code when loaded"
            ) from exc
        except Exception as exc:
            raise ModelLoadError(f"cannot read checkpoint {path}: {first_line(exc)}") from exc
        if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
            raise ModelLoadError(f"{path} holds no state dict of tensors")
        return state
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt or truncated files
        raise ModelLoadError(f"cannot read safetensors file {path}: {first_line(exc)}") from exc


def cast(unet: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast to ``dtype`` but keep the modules the class lists as float32, as diffusers' from_pretrained does."""
    torch.nn.Module.to(unet, dtype)  # diffusers' own .to(dtype) warns about those modules even when there are none
    keep = getattr(unet, "_keep_in_fp32_modules", None) or []
    for name, module in unet.named_modules():
        if any(k in name.split(".") for k in keep):
            torch.nn.Module.to(module, torch.float32)


def is_pipeline(folder: Path) -> bool:
    """Whether ``folder`` is a text-to-image pipeline (a model_index.json naming a text encoder)."""
    index = folder / "model_index.json"
    return index.is_file() and "text_encoder" in json.loads(index.read_text())
