r"""Latent text-to-image pipelines (Stable Diffusion 1.x/2.x layout) as backbones.

The UNet samples latents z of shape (C, H/f, W/f); prompts are encoded once into ``cond``
(``encoder_hidden_states``, and ``negative_encoder_hidden_states`` for CFG's unconditional half),
and ``decode`` maps the sampled latents to images through the VAE: x = D(z/s + b), with the VAE's
``scaling_factor`` s and ``shift_factor`` b (0 where the config has none), batch by batch. Samplers
see latents only. Text encoders and tokenizers load through ``transformers`` (the ``text`` extra);
weights are read from safetensors unless ``allow_pickle``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from ..errors import ModelLoadError
from .diffusers_unet import DiffusersBackbone, _cast

__all__ = ["TextToImage", "is_pipeline"]

COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


def is_pipeline(folder: Path) -> bool:
    """Whether ``folder`` is a text-to-image pipeline (a model_index.json naming a text encoder)."""
    index = folder / "model_index.json"
    return index.is_file() and "text_encoder" in json.loads(index.read_text())


class TextToImage(DiffusersBackbone):
    """A UNet2DConditionModel with its VAE, tokenizer and text encoder; sampling runs on latents."""

    def __init__(self, base: DiffusersBackbone, vae: torch.nn.Module, tokenizer: Any, text_encoder: torch.nn.Module,
                 height: int | None = None, width: int | None = None) -> None:
        super().__init__(base.unet, base.schedule, base.prediction_type, base.null_class_label, None, base.extra)
        self.vae, self.tokenizer = vae.eval().requires_grad_(False), tokenizer
        self.text_encoder = text_encoder.eval().requires_grad_(False)
        self.factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.resize(height, width)

    def resize(self, height: int | None, width: int | None) -> "TextToImage":
        """Set the image size (default: the UNet's sample size times the VAE factor); each must divide by it."""
        default = self.unet.config.sample_size * self.factor
        for name, value in (("height", height), ("width", width)):
            if value is not None and (value < self.factor or value % self.factor):
                raise ValueError(f"{name} {value} is not a positive multiple of the VAE factor {self.factor}")
        self.height, self.width = height or default, width or default
        return self

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        return (self.unet.config.in_channels, self.height // self.factor, self.width // self.factor)

    def _embed(self, texts: list[str], length: int | None = None) -> Tensor:
        tok = self.tokenizer(texts, padding="max_length", max_length=length or self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt")
        mask = tok.attention_mask if getattr(self.text_encoder.config, "use_attention_mask", False) else None
        dev = next(self.text_encoder.parameters()).device
        with torch.no_grad():
            out = self.text_encoder(tok.input_ids.to(dev), attention_mask=None if mask is None else mask.to(dev))[0]
        return out.to(dtype=self.dtype)

    def encode_prompt(self, prompt: str | Sequence[str], negative_prompt: str | Sequence[str] = "",
                      batch: int | None = None) -> dict[str, Tensor]:
        """``cond`` for ``batch`` samples: the prompt's (and the negative prompt's) text-encoder states, each
        prompt given once or once per sample, as diffusers' Stable Diffusion pipelines encode them."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        negatives = [negative_prompt] if isinstance(negative_prompt, str) else list(negative_prompt)
        n = batch or len(prompts)
        for name, texts in (("prompt", prompts), ("negative_prompt", negatives)):
            if len(texts) not in (1, n):
                raise ValueError(f"got {len(texts)} values of {name} for a batch of {n}: give one or one per sample")
        c = self._embed(prompts)
        u = self._embed(negatives, c.shape[1])
        return {"encoder_hidden_states": c.expand(n, -1, -1) if len(prompts) == 1 else c,
                "negative_encoder_hidden_states": u.expand(n, -1, -1) if len(negatives) == 1 else u}

    def _output(self, x: Tensor, t: Tensor, schedule: Any, negative_encoder_hidden_states: Tensor | None = None,
                **cond: Any) -> Tensor:
        """The UNet on the prompt's states; the negative prompt's are CFG's business, unused unguided."""
        return super()._output(x, t, schedule, **cond)

    def decode(self, latents: Tensor, batch_size: int = 1) -> Tensor:
        """Images in [−1, 1] from latents: VAE decoding of z/s + b, ``batch_size`` latents at a time."""
        cfg = self.vae.config
        shift = getattr(cfg, "shift_factor", None) or 0.0
        dev, dtype = next(self.vae.parameters()).device, next(self.vae.parameters()).dtype
        with torch.no_grad():
            return torch.cat([self.vae.decode((z.to(dev, dtype) / cfg.scaling_factor + shift)).sample.float().cpu()
                              for z in latents.split(batch_size)])

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "TextToImage":
        super().to(device, dtype)
        if device is not None:
            self.vae.to(device)
            self.text_encoder.to(device)
        if dtype is not None:
            _cast(self.vae, dtype)
            self.text_encoder.to(dtype)
        return self

    @classmethod
    def from_folder(cls, folder: Path, allow_pickle: bool = False, prediction_type: str | None = None,
                    device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> "TextToImage":
        """Load every component of a pipeline folder (safetensors weights unless ``allow_pickle``)."""
        try:
            import transformers
        except ImportError as exc:
            raise ImportError("text-to-image pipelines need transformers: pip install 'diffsampler[text]'") from exc
        from diffusers import AutoencoderKL

        index = json.loads((folder / "model_index.json").read_text())
        missing = [c for c in COMPONENTS if not (folder / c).is_dir()]
        if missing:
            raise ModelLoadError(f"pipeline {folder} lacks {', '.join(missing)}: a text-to-image pipeline needs "
                                 f"{', '.join(COMPONENTS)}")
        base = DiffusersBackbone.from_pretrained(folder, allow_pickle=allow_pickle, prediction_type=prediction_type,
                                                 text=False)
        safe = None if allow_pickle else True
        bars = transformers.utils.logging.is_progress_bar_enabled()
        transformers.utils.logging.disable_progress_bar()  # one line per component read is noise on a command line
        try:
            vae = AutoencoderKL.from_pretrained(folder / "vae", use_safetensors=safe)
            encoder_cls = getattr(transformers, index["text_encoder"][1])
            tokenizer_cls = getattr(transformers, index["tokenizer"][1])
            text_encoder = encoder_cls.from_pretrained(folder / "text_encoder", use_safetensors=safe)
            tokenizer = tokenizer_cls.from_pretrained(folder / "tokenizer")
        except (OSError, ValueError, AttributeError, KeyError) as exc:
            raise ModelLoadError(f"cannot load the pipeline in {folder}: {type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
        finally:
            if bars:
                transformers.utils.logging.enable_progress_bar()
        return cls(base, vae, tokenizer, text_encoder).to(device, dtype)
