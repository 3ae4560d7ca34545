r"""Latent text-to-image pipelines (Stable Diffusion 1.x/2.x and SDXL layouts, and SD3's) as backbones.

The UNet (SD3: the flow-matching transformer) samples latents z of shape (C, H/f, W/f); prompts are
encoded once into ``cond`` (``encoder_hidden_states``, and ``negative_encoder_hidden_states`` for CFG's
unconditional half),
and ``decode`` maps the sampled latents to images through the VAE: x = D(z/s + b), with the VAE's
``scaling_factor`` s and ``shift_factor`` b (0 where the config has none), batch by batch. Samplers
see latents only. Text encoders and tokenizers load through ``transformers`` (the ``text`` extra);
weights are read from safetensors unless ``allow_pickle``. SDXL adds its pooled ``text_embeds`` and
``time_ids`` (and their ``negative_…``) to ``cond``. An SD3-layout folder loads its transformer,
VAE and flow-matching scheduler; its three text encoders are not read, so its ``cond`` comes precomputed
(``encoder_hidden_states``, ``pooled_projections`` and their ``negative_…`` counterparts).
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
                 height: int | None = None, width: int | None = None, tokenizer_2: Any = None,
                 text_encoder_2: torch.nn.Module | None = None, force_zeros_for_empty_prompt: bool = False) -> None:
        super().__init__(base.unet, base.schedule, base.prediction_type, base.null_class_label, None, base.extra)
        self.vae, self.tokenizer, self.tokenizer_2 = vae.eval().requires_grad_(False), tokenizer, tokenizer_2
        self.text_encoder, self.text_encoder_2 = (None if e is None else e.eval().requires_grad_(False)
                                                  for e in (text_encoder, text_encoder_2))
        self.force_zeros_for_empty_prompt = force_zeros_for_empty_prompt
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

    def _embed_xl(self, texts: list[str], length: int | None = None) -> tuple[Tensor, Tensor]:
        """SDXL: both encoders' penultimate states side by side, and the second one's pooled projection."""
        states, pooled = [], None
        for tokenizer, encoder in ((self.tokenizer, self.text_encoder), (self.tokenizer_2, self.text_encoder_2)):
            ids = tokenizer(texts, padding="max_length", max_length=length or tokenizer.model_max_length,
                            truncation=True, return_tensors="pt").input_ids
            with torch.no_grad():
                out = encoder(ids.to(next(encoder.parameters()).device), output_hidden_states=True)
            if pooled is None and out[0].dim() == 2:
                pooled = out[0]
            states.append(out.hidden_states[-2])
        return torch.cat(states, -1).to(self.dtype), pooled.to(self.dtype)

    def _encode_xl(self, prompts: list[str], negatives: list[str] | None, n: int) -> dict[str, Tensor]:
        """SDXL's cond: states, pooled ``text_embeds`` and ``time_ids`` (H, W, 0, 0, H, W), and their negatives
        (zeros for no negative prompt where the pipeline says ``force_zeros_for_empty_prompt``)."""
        c, pooled = self._embed_xl(prompts)
        if negatives is None and self.force_zeros_for_empty_prompt:
            u, u_pooled = torch.zeros_like(c), torch.zeros_like(pooled)
        else:
            u, u_pooled = self._embed_xl(negatives or [""], c.shape[1])
        ids = torch.tensor([[self.height, self.width, 0, 0, self.height, self.width]], dtype=c.dtype).expand(n, -1)
        out = {"encoder_hidden_states": c, "negative_encoder_hidden_states": u, "text_embeds": pooled,
               "negative_text_embeds": u_pooled}
        out = {k: v.expand(n, *v.shape[1:]) if v.shape[0] == 1 else v for k, v in out.items()}
        return {**out, "time_ids": ids, "negative_time_ids": ids}

    def encode_prompt(self, prompt: str | Sequence[str], negative_prompt: str | Sequence[str] | None = None,
                      batch: int | None = None) -> dict[str, Tensor]:
        """``cond`` for ``batch`` samples: the prompt's (and the negative prompt's) text-encoder states, each
        prompt given once or once per sample, as diffusers' Stable Diffusion (and SDXL) pipelines encode them."""
        if self.text_encoder is None:
            raise ValueError("this pipeline's text encoders are not loaded (SD3 layout: two CLIP and a T5): pass "
                             "precomputed embeddings in cond (encoder_hidden_states, pooled_projections and their "
                             "negative_… counterparts)")
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        given = None if negative_prompt is None else \
            [negative_prompt] if isinstance(negative_prompt, str) else list(negative_prompt)
        negatives = given or [""]
        n = batch or len(prompts)
        for name, texts in (("prompt", prompts), ("negative_prompt", negatives)):
            if len(texts) not in (1, n):
                raise ValueError(f"got {len(texts)} values of {name} for a batch of {n}: give one or one per sample")
        if self.text_encoder_2 is not None:
            return self._encode_xl(prompts, given, n)
        c = self._embed(prompts)
        u = self._embed(negatives, c.shape[1])
        return {"encoder_hidden_states": c.expand(n, -1, -1) if len(prompts) == 1 else c,
                "negative_encoder_hidden_states": u.expand(n, -1, -1) if len(negatives) == 1 else u}

    def _output(self, x: Tensor, t: Tensor, schedule: Any, **cond: Any) -> Tensor:
        """The network on the prompt's states; the negative prompt's (``negative_…``) are CFG's business, unused
        unguided."""
        return super()._output(x, t, schedule, **{k: v for k, v in cond.items() if not k.startswith("negative_")})

    def enable_model_cpu_offload(self, device: str | torch.device = "cuda") -> "TextToImage":
        """Keep the components in CPU memory and move each to ``device`` only while it runs, one at a time (text
        encoders, then the denoiser, then the VAE), with accelerate's hooks: for a GPU too small for the whole
        pipeline. Sampling itself runs on ``device``."""
        from accelerate import cpu_offload_with_hook

        hook = None
        for module in (self.text_encoder, self.text_encoder_2, self.unet, self.vae):
            if module is not None:
                module.to("cpu")
                _, hook = cpu_offload_with_hook(module, torch.device(device), prev_module_hook=hook)
        self._offload_device = torch.device(device)
        return self

    @property
    def device(self) -> torch.device:
        """Where inputs go: the offload device once offloading, else the denoiser's."""
        return getattr(self, "_offload_device", None) or super().device

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
        if dtype is not None:
            _cast(self.vae, dtype)
        for encoder in (e for e in (self.text_encoder, self.text_encoder_2) if e is not None):
            if device is not None:
                encoder.to(device)
            if dtype is not None:
                encoder.to(dtype)
        return self

    @classmethod
    def from_folder(cls, folder: Path, allow_pickle: bool = False, prediction_type: str | None = None,
                    device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> "TextToImage":
        """Load every component of a pipeline folder (safetensors weights unless ``allow_pickle``)."""
        index = json.loads((folder / "model_index.json").read_text())
        if "transformer" in index:  # SD3 layout: its three text encoders are not read; cond comes precomputed
            return cls._from_sd3_folder(folder, allow_pickle, prediction_type, device, dtype)
        try:
            import transformers
        except ImportError as exc:
            raise ImportError("text-to-image pipelines need transformers: pip install 'diffsampler[text]'") from exc
        from diffusers import AutoencoderKL

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
            second = {}  # SDXL's second text encoder and tokenizer
            if (index.get("text_encoder_2") or [None])[0] is not None:
                second = {"text_encoder_2": getattr(transformers, index["text_encoder_2"][1]).from_pretrained(
                              folder / "text_encoder_2", use_safetensors=safe),
                          "tokenizer_2": getattr(transformers, index["tokenizer_2"][1]).from_pretrained(
                              folder / "tokenizer_2")}
        except (OSError, ValueError, AttributeError, KeyError) as exc:
            raise ModelLoadError(f"cannot load the pipeline in {folder}: {type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
        finally:
            if bars:
                transformers.utils.logging.enable_progress_bar()
        zeros = bool(index.get("force_zeros_for_empty_prompt", False))
        return cls(base, vae, tokenizer, text_encoder, **second, force_zeros_for_empty_prompt=zeros).to(device, dtype)

    @classmethod
    def _from_sd3_folder(cls, folder: Path, allow_pickle: bool, prediction_type: str | None,
                         device: str | torch.device, dtype: torch.dtype | None) -> "TextToImage":
        """An SD3-layout folder (transformer, vae, scheduler): no text encoders, prompts come as embeddings."""
        from diffusers import AutoencoderKL

        missing = [c for c in ("transformer", "vae", "scheduler") if not (folder / c).is_dir()]
        if missing:
            raise ModelLoadError(f"pipeline {folder} lacks {', '.join(missing)}: an SD3-layout pipeline needs "
                                 "transformer, vae, scheduler")
        base = DiffusersBackbone.from_pretrained(folder, allow_pickle=allow_pickle, prediction_type=prediction_type,
                                                 text=False)
        try:
            vae = AutoencoderKL.from_pretrained(folder / "vae", use_safetensors=None if allow_pickle else True)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot load the VAE in {folder}: {type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
        return cls(base, vae, None, None).to(device, dtype)
