r"""Classifier-free guidance (Ho & Salimans 2022), with rescale and a guidance interval.

    ε̂ = ε_u + w·(ε_c − ε_u)

Convention: w = 1 is plain conditional sampling, w = 0 unconditional, w > 1 guided (this is
diffusers' ``guidance_scale``; Ho & Salimans' w is ours minus one). Conditional and
unconditional halves go through the network as one doubled batch, and count as two
evaluations per sample. ``rescale`` φ (Lin et al. 2024) pulls the guided prediction's
per-sample standard deviation back towards the conditional one: p̂ ← φ·p̂·std(p_c)/std(p̂) + (1−φ)·p̂,
with p the model's own prediction (``rescale_space="model"``, diffusers' convention: v for a
v-model, ε for an ε-model), or ε whatever the model (``"epsilon"``). ``interval`` (lo, hi) applies guidance only for
lo < t ≤ hi and uses ε_c elsewhere (Kynkäänniemi et al. 2024).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..schedules import Schedule
from ..schedules.predictions import convert, from_epsilon
from ..tensors import bcast
from .base import GUIDANCE, NEGATIVE, check_interval, check_scale, inside, labels_of

TEXT_KEY = "encoder_hidden_states"
PROMPT_KEYS = (TEXT_KEY, "pooled_projections", "text_embeds")  # a prompt's conditioning: CFG needs its negative


def without_negatives(cond: dict[str, Any]) -> dict[str, Any]:
    """``cond`` for a plain conditional evaluation: the negative prompt's entries dropped."""
    return {k: v for k, v in cond.items() if not k.startswith(NEGATIVE)}


@GUIDANCE.register("cfg")
class CFG:
    """Classifier-free guidance ε_u + w(ε_c − ε_u), w = 1 conditional; one doubled batch per step."""

    renoise = False
    second_network = False
    linear = True  # ``combine`` is a fixed linear mix of the two predictions (subclasses that are not say so)

    def __init__(
        self,
        scale: float = 3.0,
        rescale: float = 0.0,
        interval: tuple[float, float] | None = None,
        null_label: int | None = None,
        label_key: str = "class_labels",
        rescale_space: str = "model",
    ) -> None:
        self.scale = check_scale("cfg", scale)
        if not 0 <= rescale <= 1:
            raise ValueError(f"rescale must lie in [0, 1], got {rescale!r}")
        if rescale_space not in ("model", "epsilon"):
            raise ValueError(f"unknown rescale_space {rescale_space!r}; known: model, epsilon")
        self.rescale_space = rescale_space
        self.rescale, self.interval = float(rescale), check_interval(interval)
        self.null_label, self.label_key = null_label, label_key
        # the first step from zero SNR hands it x̂_0 in place of ε (which is x there): a linear mix of the
        # predictions guides x̂_0 alike, rescaled, if at all, in the model's own space
        self.zero_snr = self.linear and (self.rescale == 0 or rescale_space == "model")

    def _halves(self, x: Tensor, cond: dict[str, Any], backbone: Any) -> dict[str, Any]:
        """Conditioning for the doubled batch [conditional; unconditional]."""
        paired = [k for k in cond if not k.startswith(NEGATIVE) and (k in PROMPT_KEYS or NEGATIVE + k in cond)]
        both = {k: v for k, v in without_negatives(cond).items() if k != self.label_key and k not in paired}
        for k in paired:
            if cond.get(NEGATIVE + k) is None:
                raise ValueError(f"cfg with {k} needs the unconditional half in cond[{NEGATIVE + k!r}]")
            both[k] = torch.cat([cond[k], cond[NEGATIVE + k].expand_as(cond[k])])
        if TEXT_KEY in cond and self.label_key not in cond:
            return both
        y = labels_of("cfg", cond, self.label_key, x.shape[0], x.device)
        null = self.null_label if self.null_label is not None or backbone is None else backbone.null_class_label
        if null is None:
            raise ValueError(
                "cfg needs a null label for the unconditional half: pass null_label= or use a model that has one"
            )
        both[self.label_key] = torch.cat([y, torch.full_like(y, int(null))])
        return both

    def _rescaled(self, g: Tensor, e_c: Tensor, x: Tensor, t: Tensor, schedule: Schedule, kind: str) -> Tensor:
        """Lin et al.'s rescale of the guided g towards the conditional e_c, in the prediction space ``kind``."""
        zero = bool((schedule.alpha_bar(t) == 0).all())  # g, e_c hold x̂_0 (sample's zero-SNR step)
        if zero and kind == "epsilon":
            raise ValueError(
                "cfg rescale in ε cannot act at zero SNR: use rescale_space='model' with a model that "
                "predicts x_0, v or flow"
            )
        xm = x if schedule.variance_preserving else x * bcast(schedule.scale(t), x)
        b = bcast(schedule.noise(t), x)
        # at zero SNR (a = 0): v = −b·x̂_0 and u = x/b − x̂_0; elsewhere p from ε
        to_p = {"sample": lambda m: m, "v_prediction": lambda m: -b * m, "flow": lambda m: xm / b - m}
        from_p = {"sample": lambda q: q, "v_prediction": lambda q: -q / b, "flow": lambda q: xm / b - q}
        p_g, p_c = ((to_p[kind](v) if zero else from_epsilon(v, xm, t, schedule, kind)) for v in (g, e_c))
        dims = list(range(1, x.dim()))
        ratio = p_c.std(dim=dims, keepdim=True) / p_g.std(dim=dims, keepdim=True).clamp_min(1e-12)
        p = self.rescale * p_g * ratio + (1 - self.rescale) * p_g
        return from_p[kind](p) if zero else convert(p, xm, t, schedule, kind, "epsilon")

    def combine(
        self, e_c: Tensor, e_u: Tensor, x: Tensor, t: Tensor, schedule: Schedule, state: dict[str, Any]
    ) -> Tensor:
        """The guided ε from the conditional and unconditional ones; ``state`` lives for one sampling run."""
        return e_u + self.scale * (e_c - e_u)

    def __call__(self, eps: Any, schedule: Schedule, backbone: Any = None) -> Any:
        state: dict[str, Any] = {}
        kind = getattr(backbone, "prediction_type", "epsilon") if self.rescale_space == "model" else "epsilon"

        def guided(x: Tensor, t: Tensor, **cond: Any) -> Tensor:
            on = inside(t, self.interval)
            if not bool(on.any()):
                return eps(x, t, **without_negatives(cond))
            e_c, e_u = eps(torch.cat([x, x]), torch.cat([t, t]), **self._halves(x, cond, backbone)).chunk(2)
            g = self.combine(e_c, e_u, x, t, schedule, state)
            if self.rescale > 0:
                g = self._rescaled(g, e_c, x, t, schedule, kind)
            return torch.where(bcast(on, x).bool(), g, e_c)

        return guided
