r"""diffusers UNets (``UNet2DModel``, ``UNet2DConditionModel``) as ε-functions.

Loads a pipeline folder (``unet/`` + ``scheduler/``), a bare model folder (``config.json`` +
weights), a single ``.safetensors`` file with its config, or a hub id (through the local hub
cache, the same call when a network is there). The scheduler config beside the model gives
the ``Schedule`` and the prediction type, converted to ε as in ``backbones.base``. Weights are
read from safetensors; pickle checkpoints (``.bin``, ``.ckpt``, ``.pt``, ``.pth``) only with
``allow_pickle=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import ModelLoadError
from ..schedules import DiscreteSchedule, Schedule
from ..tensors import check_labels
from .base import NetworkBackbone, prediction_type_of
from .diffusers_io import (
    EXTRA_CONFIG,
    PICKLE_SUFFIXES,
    TRANSFORMERS,
    UNET_CLASSES,
    cast,
    first_line,
    load_weights,
    read_json,
)

__all__ = ["DiffusersBackbone", "ModelLoadError", "PICKLE_SUFFIXES"]


def _unet_class(config: dict[str, Any]) -> type:
    import diffusers

    name = config.get("_class_name", "UNet2DModel")
    if name not in UNET_CLASSES:
        raise ModelLoadError(f"unsupported model class {name!r}; supported: {', '.join(UNET_CLASSES)}")
    return getattr(diffusers, name)


def _weights_in(folder: Path, allow_pickle: bool) -> Path:
    for name in ("diffusion_pytorch_model.safetensors", "model.safetensors"):
        if (folder / name).is_file():
            return folder / name
    pickles = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        return pickles[0] if allow_pickle else _refuse(pickles[0])
    raise ModelLoadError(f"no weights in {folder}: expected diffusion_pytorch_model.safetensors")


def _refuse(path: Path) -> Path:
    load_weights(path, allow_pickle=False)
    return path  # not reached


def _build(config: dict[str, Any], state: dict[str, Tensor], origin: Path) -> torch.nn.Module:
    cls = _unet_class(config)
    try:
        model = cls.from_config({k: v for k, v in config.items() if not k.startswith("_")})
    except Exception as exc:  # diffusers raises whatever a bad value leads to (ZeroDivisionError, TypeError, …)
        raise ModelLoadError(
            f"the model config of {origin} does not build a {cls.__name__}: {type(exc).__name__}: {first_line(exc)}"
        ) from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"weights in {origin} do not fit the model config: {first_line(exc)}") from exc
    return model


def _beside(folder: Path, model_dir: Path) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The scheduler config and ``diffsampler.json`` of a model: in its folder, or in the pipeline around it."""

    def first(*candidates: Path) -> dict[str, Any] | None:
        return next((read_json(p) for p in candidates if p.is_file()), None)

    sched = first(
        folder / "scheduler" / "scheduler_config.json",
        model_dir / "scheduler_config.json",
        model_dir.parent / "scheduler" / "scheduler_config.json",
    )
    extra = first(folder / EXTRA_CONFIG, model_dir / EXTRA_CONFIG, model_dir.parent / EXTRA_CONFIG)
    return sched, extra or {}


class DiffusersBackbone(NetworkBackbone):
    """A diffusers ``UNet2DModel`` / ``UNet2DConditionModel`` predicting ε, x_0 or v on training-index time, or an
    ``SD3Transformer2DModel`` predicting flow (its ``pooled_projections`` in ``cond``) on rectified-flow time."""

    # subclasses that load whole folders of their own (``recognizes(path)``, ``from_folder(…)``), tried in turn by
    # ``from_pretrained``; pipeline.py registers TextToImage
    folder_kinds: list[Any] = []

    def __init__(
        self,
        unet: torch.nn.Module,
        schedule: Schedule | None = None,
        prediction_type: str = "epsilon",
        null_class_label: int | None = None,
        clip: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        prediction_type = prediction_type_of(prediction_type)
        self.unet = unet.eval().requires_grad_(False)
        self.schedule, self.prediction_type = schedule, prediction_type
        self.null_class_label, self.clip = null_class_label, clip
        self.extra = dict(extra or {})

    # -- facts read from the model's config ---------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        return dict(self.unet.config)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one sample."""
        c = self.unet.config
        size = c.sample_size if isinstance(c.sample_size, (tuple, list)) else (c.sample_size, c.sample_size)
        return (c.in_channels, *size)

    @property
    def num_classes(self) -> int | None:
        """Number of real classes of a class-conditional model (the null label excluded), else None."""
        n = getattr(self.unet.config, "num_class_embeds", None)
        if n is None:
            return None
        return n - 1 if self.null_class_label is not None else n

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "DiffusersBackbone":
        if device is not None:
            self.unet.to(device)
        if dtype is not None:
            cast(self.unet, dtype)
        return self

    def compile(self, **options: Any) -> "DiffusersBackbone":
        """Compile the UNet in place with ``torch.compile(**options)``; the first call then compiles (slow)."""
        self.unet.compile(**options)
        self.compiled = True
        return self

    # -- the ε-function --------------------------------------------------------------------------------
    def class_labels(self, labels: Any, batch: int) -> Tensor | None:
        """Validated labels [B] on the model's device; the null label when ``labels`` is None."""
        if getattr(self.unet.config, "num_class_embeds", None) is None:
            if labels is not None:
                raise ValueError("class_labels given, but this model is not class-conditional")
            return None
        if labels is None:
            if self.null_class_label is None:
                raise ValueError(f"this model is class-conditional: pass class_labels in [0, {self.num_classes})")
            labels = self.null_class_label
        return check_labels(labels, batch, self.num_classes, self.null_class_label, self.device)

    def _output(
        self,
        x: Tensor,
        t: Tensor,
        schedule: Schedule,
        class_labels: Any = None,
        encoder_hidden_states: Tensor | None = None,
        **cond: Any,
    ) -> Tensor:
        """The network's raw prediction at the model's (x, t), on x's device and dtype."""
        kwargs: dict[str, Any] = dict(cond)
        y = self.class_labels(class_labels, x.shape[0])
        if y is not None:
            kwargs["class_labels"] = y
        kind = type(self.unet).__name__
        if encoder_hidden_states is not None:
            kwargs["encoder_hidden_states"] = encoder_hidden_states.to(device=self.device, dtype=self.dtype)
        elif kind in ("UNet2DConditionModel", *TRANSFORMERS):
            raise ValueError(f"{kind} needs encoder_hidden_states in cond")
        added = {
            k: kwargs.pop(k).to(device=self.device, dtype=self.dtype)
            for k in ("text_embeds", "time_ids")
            if k in kwargs
        }
        if added:  # SDXL's micro-conditioning
            kwargs["added_cond_kwargs"] = added
        tm = schedule.model_time(t).to(device=self.device, dtype=torch.float32)
        if kind in TRANSFORMERS:
            if kwargs.get("pooled_projections") is None:
                raise ValueError(f"{kind} needs pooled_projections in cond")
            kwargs["pooled_projections"] = kwargs["pooled_projections"].to(device=self.device, dtype=self.dtype)
            out = self.unet(hidden_states=x.to(device=self.device, dtype=self.dtype), timestep=tm, **kwargs).sample
        else:
            out = self.unet(x.to(device=self.device, dtype=self.dtype), tm, **kwargs).sample
        if out.shape != x.shape:
            raise ValueError(f"model output {tuple(out.shape)} does not match the shape of x {tuple(x.shape)}")
        return out.to(device=x.device, dtype=x.dtype)

    # -- loading ---------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        source: str | Path,
        *,
        config: str | Path | dict[str, Any] | None = None,
        allow_pickle: bool = False,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        prediction_type: str | None = None,
        text: bool = True,
    ) -> "DiffusersBackbone":
        """Load from a pipeline or model folder, a weights file (+ ``config``), or a hub id. A folder that a
        class in ``folder_kinds`` recognises (a text-to-image pipeline: ``TextToImage``, with its VAE, tokenizer and
        text encoder) loads as that class unless ``text=False``."""
        path = Path(source)
        if (
            not path.exists()
            and isinstance(source, str)
            and source.count("/") == 1
            and not source.startswith((".", "/", "~"))
        ):
            path = cls._hub_snapshot(source, allow_pickle)
        kind = next((k for k in cls.folder_kinds if k.recognizes(path)), None) if text and path.is_dir() else None
        if kind is not None:
            return kind.from_folder(path, allow_pickle, prediction_type, device, dtype)
        if path.is_file():
            unet, sched_cfg, extra = cls._from_file(path, config, allow_pickle)
        elif path.is_dir():
            unet, sched_cfg, extra = cls._from_folder(path, allow_pickle)
        else:
            raise ModelLoadError(f"model {str(source)!r} not found: not a file, a folder, or a hub id (org/name)")
        schedule = DiscreteSchedule.from_diffusers(sched_cfg) if sched_cfg is not None else None
        flow = str((sched_cfg or {}).get("_class_name", "")).startswith("FlowMatch")
        ptype = prediction_type or (sched_cfg or {}).get("prediction_type", "flow" if flow else "epsilon")
        clip = extra.get("clip")
        if clip is None and sched_cfg is not None and sched_cfg.get("clip_sample"):
            clip = float(sched_cfg.get("clip_sample_range", 1.0))
        unet.to(device)
        if dtype is not None:
            cast(unet, dtype)
        return cls(unet, schedule, ptype, extra.get("null_class_label"), clip, extra)

    @staticmethod
    def _from_folder(folder: Path, allow_pickle: bool):
        model_dir = next(
            (folder / d for d in ("unet", "transformer") if (folder / d / "config.json").is_file()), folder
        )
        if not (model_dir / "config.json").is_file():
            raise ModelLoadError(
                f"{folder} holds no diffusers model: expected unet/config.json, transformer/config.json or config.json"
            )
        cfg = read_json(model_dir / "config.json")
        _unet_class(cfg)
        unet = _build(cfg, load_weights(_weights_in(model_dir, allow_pickle), allow_pickle), model_dir)
        return unet, *_beside(folder, model_dir)

    @staticmethod
    def _from_file(path: Path, config: str | Path | dict[str, Any] | None, allow_pickle: bool):
        if config is None:
            beside = path.parent / "config.json"
            if not beside.is_file():
                raise ModelLoadError(f"{path} needs its model config: pass config= or put config.json beside it")
            config = beside
        cfg = dict(config) if isinstance(config, dict) else read_json(Path(config))
        unet = _build(cfg, load_weights(path, allow_pickle), path)
        return unet, *_beside(path.parent, path.parent)

    @staticmethod
    def _hub_snapshot(repo_id: str, allow_pickle: bool) -> Path:
        from huggingface_hub import snapshot_download

        parts = (
            "unet",
            "transformer",
            "vae",
            "text_encoder",
            "tokenizer",
            "text_encoder_2",
            "tokenizer_2",
            "text_encoder_3",
            "tokenizer_3",
            "scheduler",
        )
        patterns = [
            "model_index.json",
            "*.json",
            "*.safetensors",
            *(f"{p}/*.json" for p in parts),
            *(f"{p}/*.safetensors" for p in parts),
            "tokenizer/*.txt",
            "tokenizer_2/*.txt",
        ] + (["*.bin", *(f"{p}/*.bin" for p in parts)] if allow_pickle else [])
        try:
            return Path(snapshot_download(repo_id, allow_patterns=patterns))
        except Exception as exc:
            raise ModelLoadError(
                f"cannot get {repo_id!r} from the hub or its local cache: {type(exc).__name__}: {first_line(exc)}"
            ) from exc
