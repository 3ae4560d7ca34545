r"""Latent text-to-image pipelines (Stable Diffusion 1.x/2.x, SDXL and SD3 layouts) as backbones.

The UNet (SD3: the flow-matching transformer) samples latents z of shape (C, H/f, W/f); prompts are
encoded once into ``cond`` (``encoder_hidden_states``, and ``negative_encoder_hidden_states`` for CFG's
unconditional half; SDXL adds ``text_embeds`` and ``time_ids``, SD3 ``pooled_projections``, each with
its ``negative_…``), and ``decode`` maps the sampled latents to images through the VAE: x = D(z/s + b),
with the VAE's ``scaling_factor`` s and ``shift_factor`` b (0 where the config has none), batch by
batch. Samplers see latents only. Text encoders and tokenizers load through ``transformers`` (the
``text`` extra); weights are read from safetensors unless ``allow_pickle``. An SD3-layout folder
without text encoders takes its ``cond`` precomputed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from ..errors import ModelLoadError
from .diffusers_io import TRANSFORMERS, cast, first_line, is_pipeline
from .diffusers_unet import DiffusersBackbone

__all__ = ["TextToImage", "is_pipeline"]

COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
TEXT_PARTS = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "text_encoder_3", "tokenizer_3")


class TextToImage(DiffusersBackbone):
    """A UNet2DConditionModel with its VAE, tokenizer and text encoder; sampling runs on latents."""

    recognizes = staticmethod(is_pipeline)

    def __init__(
        self,
        base: DiffusersBackbone,
        vae: torch.nn.Module,
        text: dict[str, Any] | None = None,
        height: int | None = None,
        width: int | None = None,
        force_zeros_for_empty_prompt: bool = False,
    ) -> None:
        """``text``: the pipeline's ``text_encoder``/``tokenizer`` pairs by their names (``_2``: SDXL's and SD3's
        second CLIP, ``_3``: SD3's T5), any of them absent."""
        super().__init__(base.unet, base.schedule, base.prediction_type, base.null_class_label, None, base.extra)
        self.vae = vae.eval().requires_grad_(False)
        text = text or {}
        for k in TEXT_PARTS:
            part = text.get(k)
            setattr(self, k, part.eval().requires_grad_(False) if isinstance(part, torch.nn.Module) else part)
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
        tok = self.tokenizer(
            texts,
            padding="max_length",
            max_length=length or self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        mask = tok.attention_mask if getattr(self.text_encoder.config, "use_attention_mask", False) else None
        dev = next(self.text_encoder.parameters()).device
        with torch.no_grad():
            out = self.text_encoder(tok.input_ids.to(dev), attention_mask=None if mask is None else mask.to(dev))[0]
        return out.to(dtype=self.dtype)

    def _embed_xl(self, texts: list[str], length: int | None = None) -> tuple[Tensor, Tensor]:
        """SDXL: both encoders' penultimate states side by side, and the second one's pooled projection."""
        (s1, _), (s2, pooled) = (
            _clip(tok, enc, texts, length or tok.model_max_length)
            for tok, enc in ((self.tokenizer, self.text_encoder), (self.tokenizer_2, self.text_encoder_2))
        )
        return torch.cat([s1, s2], -1).to(self.dtype), pooled.to(self.dtype)

    def _encode_xl(self, prompts: list[str], negatives: list[str] | None, n: int) -> dict[str, Tensor]:
        """SDXL's cond: states, pooled ``text_embeds`` and ``time_ids`` (H, W, 0, 0, H, W), and their negatives
        (zeros for no negative prompt where the pipeline says ``force_zeros_for_empty_prompt``)."""
        c, pooled = self._embed_xl(prompts)
        if negatives is None and self.force_zeros_for_empty_prompt:
            u, u_pooled = torch.zeros_like(c), torch.zeros_like(pooled)
        else:
            u, u_pooled = self._embed_xl(negatives or [""], c.shape[1])
        ids = torch.tensor([[self.height, self.width, 0, 0, self.height, self.width]], dtype=c.dtype)
        return _per_sample(
            {
                "encoder_hidden_states": c,
                "negative_encoder_hidden_states": u,
                "text_embeds": pooled,
                "negative_text_embeds": u_pooled,
                "time_ids": ids,
                "negative_time_ids": ids,
            },
            n,
        )

    def _embed_sd3(self, texts: list[str], max_sequence_length: int = 256) -> tuple[Tensor, Tensor]:
        """SD3: both CLIPs' penultimate states side by side, padded to T5's width, then T5's states (zeros
        without a T5) along the sequence; and both CLIPs' pooled projections side by side."""
        (s1, p1), (s2, p2) = (
            _clip(tok, enc, texts, self.tokenizer.model_max_length)
            for tok, enc in ((self.tokenizer, self.text_encoder), (self.tokenizer_2, self.text_encoder_2))
        )
        clip = torch.cat([s1, s2], -1)
        if self.text_encoder_3 is None:
            t5 = torch.zeros(
                len(texts),
                max_sequence_length,
                self.unet.config.joint_attention_dim,
                dtype=clip.dtype,
                device=clip.device,
            )
        else:
            ids = self.tokenizer_3(
                texts,
                padding="max_length",
                max_length=max_sequence_length,
                truncation=True,
                add_special_tokens=True,
                return_tensors="pt",
            ).input_ids
            with torch.no_grad():
                t5 = self.text_encoder_3(ids.to(next(self.text_encoder_3.parameters()).device))[0]
        clip = torch.nn.functional.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))
        return torch.cat([clip, t5.to(clip)], -2).to(self.dtype), torch.cat([p1, p2], -1).to(self.dtype)

    def _encode_sd3(self, prompts: list[str], negatives: list[str], n: int) -> dict[str, Tensor]:
        c, pooled = self._embed_sd3(prompts)
        u, u_pooled = self._embed_sd3(negatives)
        return _per_sample(
            {
                "encoder_hidden_states": c,
                "negative_encoder_hidden_states": u,
                "pooled_projections": pooled,
                "negative_pooled_projections": u_pooled,
            },
            n,
        )

    def encode_prompt(
        self, prompt: str | Sequence[str], negative_prompt: str | Sequence[str] | None = None, batch: int | None = None
    ) -> dict[str, Tensor]:
        """``cond`` for ``batch`` samples: the prompt's (and the negative prompt's) text-encoder states, each
        prompt given once or once per sample, as diffusers' Stable Diffusion (and SDXL) pipelines encode them."""
        if self.text_encoder is None:
            raise ValueError(
                "this pipeline has no text encoders (an SD3-layout folder without them): pass "
                "precomputed embeddings in cond (encoder_hidden_states, pooled_projections and their "
                "negative_… counterparts)"
            )
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        given = (
            None
            if negative_prompt is None
            else [negative_prompt]
            if isinstance(negative_prompt, str)
            else list(negative_prompt)
        )
        negatives = given or [""]
        n = batch or len(prompts)
        for name, texts in (("prompt", prompts), ("negative_prompt", negatives)):
            if len(texts) not in (1, n):
                raise ValueError(f"got {len(texts)} values of {name} for a batch of {n}: give one or one per sample")
        if type(self.unet).__name__ in TRANSFORMERS:
            return self._encode_sd3(prompts, negatives, n)
        if self.text_encoder_2 is not None:
            return self._encode_xl(prompts, given, n)
        c = self._embed(prompts)
        u = self._embed(negatives, c.shape[1])
        return _per_sample({"encoder_hidden_states": c, "negative_encoder_hidden_states": u}, n)

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
        for module in (*self._encoders(), self.unet, self.vae):
            module.to("cpu")
            _, hook = cpu_offload_with_hook(module, torch.device(device), prev_module_hook=hook)
        self._offload_device = torch.device(device)
        return self

    def _encoders(self) -> list[torch.nn.Module]:
        return [e for e in (self.text_encoder, self.text_encoder_2, self.text_encoder_3) if e is not None]

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
            return torch.cat(
                [
                    self.vae.decode((z.to(dev, dtype) / cfg.scaling_factor + shift)).sample.float().cpu()
                    for z in latents.split(batch_size)
                ]
            )

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "TextToImage":
        super().to(device, dtype)
        if device is not None:
            self.vae.to(device)
        if dtype is not None:
            cast(self.vae, dtype)
        for encoder in self._encoders():
            if device is not None:
                encoder.to(device)
            if dtype is not None:
                encoder.to(dtype)
        return self

    @classmethod
    def from_folder(
        cls,
        folder: Path,
        allow_pickle: bool = False,
        prediction_type: str | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
    ) -> "TextToImage":
        """Load every component of a pipeline folder (safetensors weights unless ``allow_pickle``)."""
        index = json.loads((folder / "model_index.json").read_text())
        if "transformer" in index:  # SD3 layout
            return cls._from_sd3_folder(folder, index, allow_pickle, prediction_type, device, dtype)
        missing = [c for c in COMPONENTS if not (folder / c).is_dir()]
        if missing:
            raise ModelLoadError(
                f"pipeline {folder} lacks {', '.join(missing)}: a text-to-image pipeline needs {', '.join(COMPONENTS)}"
            )
        base = DiffusersBackbone.from_pretrained(
            folder, allow_pickle=allow_pickle, prediction_type=prediction_type, text=False
        )
        vae = _vae(folder, allow_pickle)
        zeros = bool(index.get("force_zeros_for_empty_prompt", False))
        return cls(base, vae, _text_parts(folder, index, allow_pickle), force_zeros_for_empty_prompt=zeros).to(
            device, dtype
        )

    @classmethod
    def _from_sd3_folder(
        cls,
        folder: Path,
        index: dict[str, Any],
        allow_pickle: bool,
        prediction_type: str | None,
        device: str | torch.device,
        dtype: torch.dtype | None,
    ) -> "TextToImage":
        """An SD3-layout folder: transformer, vae, scheduler, and the text encoders it names (two CLIPs and a T5;
        none at all, and prompts come as embeddings)."""
        missing = [c for c in ("transformer", "vae", "scheduler") if not (folder / c).is_dir()]
        if missing:
            raise ModelLoadError(
                f"pipeline {folder} lacks {', '.join(missing)}: an SD3-layout pipeline needs "
                "transformer, vae, scheduler"
            )
        base = DiffusersBackbone.from_pretrained(
            folder, allow_pickle=allow_pickle, prediction_type=prediction_type, text=False
        )
        return cls(base, _vae(folder, allow_pickle), _text_parts(folder, index, allow_pickle)).to(device, dtype)


def _clip(tokenizer: Any, encoder: torch.nn.Module, texts: list[str], length: int) -> tuple[Tensor, Tensor]:
    """A CLIP encoder's penultimate hidden states and its first output (pooled projection where it has one) for
    ``texts`` padded to ``length`` tokens, as the SDXL and SD3 pipelines read them."""
    ids = tokenizer(texts, padding="max_length", max_length=length, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        out = encoder(ids.to(next(encoder.parameters()).device), output_hidden_states=True)
    return out.hidden_states[-2], out[0]


def _per_sample(cond: dict[str, Tensor], n: int) -> dict[str, Tensor]:
    """Entries given once expanded to ``n`` samples."""
    return {k: v.expand(n, *v.shape[1:]) if v.shape[0] == 1 else v for k, v in cond.items()}


def _vae(folder: Path, allow_pickle: bool) -> torch.nn.Module:
    from diffusers import AutoencoderKL

    try:
        return AutoencoderKL.from_pretrained(folder / "vae", use_safetensors=None if allow_pickle else True)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load the VAE in {folder}: {type(exc).__name__}: {first_line(exc)}") from exc


def _text_parts(folder: Path, index: dict[str, Any], allow_pickle: bool) -> dict[str, Any]:
    """The text encoders and tokenizers that model_index.json names (not null), through transformers."""
    named = [k for k in TEXT_PARTS if (index.get(k) or [None])[0] is not None]
    if not named:
        return {}
    try:
        import transformers
    except ImportError as exc:
        raise ImportError("text-to-image pipelines need transformers: pip install 'diffsampler[text]'") from exc
    parts: dict[str, Any] = {}
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # one line per component read is noise on a command line
    try:
        for name in named:
            cls = getattr(transformers, index[name][1])
            kwargs = {"use_safetensors": None if allow_pickle else True} if name.startswith("text_encoder") else {}
            parts[name] = cls.from_pretrained(folder / name, **kwargs)
    except (OSError, ValueError, AttributeError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"cannot load the pipeline in {folder}: {type(exc).__name__}: {first_line(exc)}") from exc
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()
    return parts


DiffusersBackbone.folder_kinds.append(TextToImage)
