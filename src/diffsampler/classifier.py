"""Small CNN classifiers of 28×28 digits: noise-conditional p(y | x_t, t) for classifier guidance,
and a plain classifier on clean images whose penultimate features define the digits Fréchet distance."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .errors import ModelLoadError

__all__ = ["DigitClassifier", "timestep_embedding"]


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding [cos(t·f_k), sin(t·f_k)], f_k = 10000^(−k/(dim/2)), of timesteps [B]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, temb: int | None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.norm = nn.GroupNorm(8, cout)
        self.time = nn.Linear(temb, cout) if temb else None

    def forward(self, x: Tensor, emb: Tensor | None) -> Tensor:
        h = self.conv(x)
        if self.time is not None and emb is not None:
            h = h + self.time(emb)[:, :, None, None]
        return nn.functional.silu(self.norm(h))


class DigitClassifier(nn.Module):
    """CNN 28→14→7 with GroupNorm and SiLU; ``time_conditional`` adds a timestep embedding to every block."""

    def __init__(self, num_classes: int = 10, width: int = 32, time_conditional: bool = True) -> None:
        super().__init__()
        self.config = {"num_classes": num_classes, "width": width, "time_conditional": time_conditional}
        temb = 4 * width if time_conditional else None
        self.embed = nn.Sequential(nn.Linear(width, temb), nn.SiLU(), nn.Linear(temb, temb)) if temb else None
        self.inp = nn.Conv2d(1, width, 3, padding=1)
        self.blocks = nn.ModuleList(
            [
                _Block(width, 2 * width, 2, temb),
                _Block(2 * width, 2 * width, 1, temb),
                _Block(2 * width, 4 * width, 2, temb),
                _Block(4 * width, 4 * width, 1, temb),
            ]
        )
        self.head = nn.Linear(4 * width, num_classes)

    @property
    def feature_dim(self) -> int:
        return self.head.in_features

    def features(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        """Penultimate features [B, 4·width] (global average pool of the last block)."""
        emb = None
        if self.embed is not None:
            if t is None:
                raise ValueError("this classifier is noise-conditional: pass t (training index)")
            emb = self.embed(
                timestep_embedding(
                    torch.as_tensor(t, device=x.device).reshape(-1).expand(x.shape[0]), self.config["width"]
                )
            )
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return h.mean(dim=(2, 3))

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        """Logits [B, num_classes]."""
        return self.head(self.features(x, t))

    def save_pretrained(self, folder: str | Path, **extra: Any) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(
            json.dumps({"_class_name": "DigitClassifier", **self.config, **extra}, indent=2) + "\n"
        )
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / "model.safetensors"))

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "DigitClassifier":
        from safetensors.torch import load_file

        folder = Path(folder)
        try:
            cfg = json.loads((folder / "config.json").read_text())
            model = cls(**{k: cfg[k] for k in ("num_classes", "width", "time_conditional")})
            model.load_state_dict(load_file(str(folder / "model.safetensors")))
        except Exception as exc:  # a missing file, a bad config, or weights of another shape: one line each
            text = str(exc).strip().splitlines()
            raise ModelLoadError(
                f"cannot load a classifier from {folder}: {text[0] if text else type(exc).__name__}"
            ) from exc
        return model.eval().requires_grad_(False)
