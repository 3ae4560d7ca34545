r"""Perturbed-attention guidance (Ahn et al. 2024, "Self-rectifying diffusion sampling with perturbed-attention
guidance").

    ε̂ = ε_c + s·(ε_c − ε_ptb)                          (cfg_scale = 1: one doubled batch)
    ε̂ = ε_u + w·(ε_c − ε_u) + s·(ε_c − ε_ptb)           (with CFG: one tripled batch [u; c; ptb])

ε_ptb is the same network with the self-attention maps of the chosen layers replaced by the
identity, so those layers output their value projection: Attn(Q, K, V) = V. The layers are
picked as diffusers' PAG pipelines pick ``pag_applied_layers`` (a regular expression searched in
the module name, "mid" by default; here a match may not stop inside a number), and perturbed
through their attention processors only for the perturbed rows of the batch: the processors are
swapped for the call and restored after it. Needs a diffusers UNet with self-attention (the
bundled digits model has it).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor

from ..schedules import Schedule
from ..tensors import bcast
from .base import GUIDANCE, check_scale, inside
from .cfg import CFG, without_negatives


def self_attention_layers(model: torch.nn.Module, layers: Sequence[str]) -> list[torch.nn.Module]:
    """The self-attention modules whose names match one of ``layers``: a regular expression searched in the name, as
    diffusers' ``pag_applied_layers``, that may not stop inside a number ("blocks.1" is not "blocks.10")."""
    from diffusers.models.attention_processor import Attention

    found = {name: m for name, m in model.named_modules() if isinstance(m, Attention) and not m.is_cross_attention}
    picked: list[torch.nn.Module] = []
    for layer in layers:
        hits = [m for name, m in found.items() if re.search(f"(?:{layer})(?![0-9])", name) is not None]
        if not hits:
            raise ValueError(
                f"pag layer {layer!r} matches no self-attention layer; the model has: {', '.join(found) or 'none'}"
            )
        picked += [m for m in hits if m not in picked]
    return picked


def identity_attention(attn: Any, hidden_states: Tensor, temb: Tensor | None = None) -> Tensor:
    """An attention layer whose attention map is the identity: its output projection of V, with the layer's
    norms, residual and rescaling."""
    residual = hidden_states
    if attn.spatial_norm is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)
    shape = hidden_states.shape
    if hidden_states.ndim == 4:
        hidden_states = hidden_states.flatten(2).transpose(1, 2)
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    hidden_states = attn.to_out[1](attn.to_out[0](attn.to_v(hidden_states)))
    if len(shape) == 4:
        hidden_states = hidden_states.transpose(1, 2).reshape(shape)
    if attn.residual_connection:
        hidden_states = hidden_states + residual
    return hidden_states / attn.rescale_output_factor


class _Perturbed:
    """An attention processor that runs the layer's own processor on the unperturbed rows and
    ``identity_attention`` on the rows from ``start`` on."""

    def __init__(self, inner: Any, start: int) -> None:
        self.inner, self.start = inner, start

    def __call__(
        self,
        attn: Any,
        hidden_states: Tensor,
        encoder_hidden_states: Tensor | None = None,
        attention_mask: Tensor | None = None,
        temb: Tensor | None = None,
        **kw: Any,
    ) -> Tensor:
        k = self.start
        rest = {
            name: (v[:k] if isinstance(v, Tensor) and v.shape[:1] == hidden_states.shape[:1] else v)
            for name, v in (
                ("encoder_hidden_states", encoder_hidden_states),
                ("attention_mask", attention_mask),
                ("temb", temb),
            )
        }
        kept = self.inner(attn, hidden_states[:k], **rest, **kw)
        ptb = identity_attention(attn, hidden_states[k:], None if temb is None else temb[k:])
        return torch.cat([kept, ptb])


@contextmanager
def perturbed(modules: Sequence[Any], start: int) -> Iterator[None]:
    """Within the block, the rows of every batch from ``start`` on see identity attention in ``modules``."""
    saved = [m.processor for m in modules]
    try:
        for m, p in zip(modules, saved):
            m.processor = _Perturbed(p, start)
        yield
    finally:
        for m, p in zip(modules, saved):
            m.processor = p


@GUIDANCE.register("pag", labels=False)
class PAG(CFG):
    """Perturbed-attention guidance ε_c + s(ε_c − ε_ptb), with CFG on top where ``cfg_scale`` ≠ 1."""

    def __init__(
        self,
        scale: float = 3.0,
        layers: str | Sequence[str] = "mid",
        cfg_scale: float = 1.0,
        interval: tuple[float, float] | None = None,
        null_label: int | None = None,
        label_key: str = "class_labels",
    ) -> None:
        super().__init__(scale=cfg_scale, interval=interval, null_label=null_label, label_key=label_key)
        self.cfg_scale, self.scale = self.scale, check_scale("pag", scale)
        self.layers = tuple(layers.split(",")) if isinstance(layers, str) else tuple(layers)
        if not self.layers or not all(isinstance(layer, str) and layer for layer in self.layers):
            raise ValueError(f"pag layers must be one or more layer names (regular expressions), got {layers!r}")

    def __call__(self, eps: Any, schedule: Schedule, backbone: Any = None) -> Any:
        unet = getattr(backbone, "unet", None)
        if not isinstance(unet, torch.nn.Module):
            raise ValueError(
                f"pag needs a diffusers UNet with self-attention layers; the model is {type(backbone).__name__}"
            )
        modules = self_attention_layers(unet, self.layers)
        with_cfg = self.cfg_scale != 1

        def guided(x: Tensor, t: Tensor, **cond: Any) -> Tensor:
            on = inside(t, self.interval)
            plain = without_negatives(cond)
            if not bool(on.any()):
                return eps(x, t, **plain)
            b = x.shape[0]
            if with_cfg:
                halves = self._halves(x, cond, backbone)  # [c; u]: reordered to diffusers' [u; c; ptb]
                both = {
                    k: (torch.cat([v[b:], v[:b], v[:b]]) if isinstance(v, Tensor) and v.shape[:1] == (2 * b,) else v)
                    for k, v in halves.items()
                }
                with perturbed(modules, 2 * b):
                    e_u, e_c, e_p = eps(torch.cat([x, x, x]), torch.cat([t, t, t]), **both).chunk(3)
                g = e_u + self.cfg_scale * (e_c - e_u) + self.scale * (e_c - e_p)
            else:
                both = {
                    k: (torch.cat([v, v]) if isinstance(v, Tensor) and v.shape[:1] == (b,) else v)
                    for k, v in plain.items()
                }
                with perturbed(modules, b):
                    e_c, e_p = eps(torch.cat([x, x]), torch.cat([t, t]), **both).chunk(2)
                g = e_c + self.scale * (e_c - e_p)
            return torch.where(bcast(on, x).bool(), g, e_c)

        return guided
