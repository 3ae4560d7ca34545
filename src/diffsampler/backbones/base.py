r"""Backbones: adapters that turn a model into an ε-function on continuous time.

A backbone offers ``eps(x, t, schedule, **cond)``: the noise prediction at x_t, with t a [B]
tensor of continuous times. Models that predict something else are converted, with
α = √ᾱ(t) and s = √(1−ᾱ(t)):

    x_0-prediction ("sample"):  ε = (x − α·x̂_0)/s
    v-prediction:                ε = α·v + s·x          (v = α·ε − s·x_0)
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from ..schedules import Schedule
from ..tensors import bcast

__all__ = ["Backbone", "CallableBackbone", "PREDICTION_TYPES", "to_epsilon"]

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


def to_epsilon(out: Tensor, x: Tensor, t: Tensor, schedule: Schedule, prediction_type: str) -> Tensor:
    """Convert a model output of ``prediction_type`` at (x, t) to ε."""
    if prediction_type == "epsilon":
        return out
    alpha, std = bcast(schedule.alpha(t), x), bcast(schedule.std(t), x)
    if prediction_type == "sample":
        return (x - alpha * out) / std
    if prediction_type == "v_prediction":
        return alpha * out + std * x
    raise ValueError(f"unknown prediction_type {prediction_type!r}; known: {', '.join(PREDICTION_TYPES)}")


class Backbone:
    """Base class: ``eps(x, t, schedule, **cond)``, and what is known of the model.

    Every backbone answers these (the defaults say "not known" / "not applicable"):
    ``schedule`` the schedule it was trained with; ``sample_shape`` the shape of one sample;
    ``num_classes`` its number of real classes if class-conditional; ``null_class_label`` the label
    that means "unconditional" (for CFG); ``clip`` the bound on x̂_0 its pixels obey; ``device``
    where its inputs go; ``compiled`` whether ``compile`` was called.
    """

    schedule: Schedule | None = None
    sample_shape: tuple[int, ...] | None = None
    num_classes: int | None = None
    null_class_label: int | None = None
    clip: float | None = None
    device: torch.device = torch.device("cpu")
    compiled: bool = False

    def eps(self, x: Tensor, t: Tensor, schedule: Schedule, **cond: Any) -> Tensor:
        raise NotImplementedError

    def compile(self, **options: Any) -> "Backbone":
        """Compile the network with ``torch.compile(**options)`` in place; the first call then compiles (slow)."""
        raise TypeError(f"{type(self).__name__} has no network to compile")


class CallableBackbone(Backbone):
    """Any ``model(x, t_model, **cond)`` predicting ε, x_0 (``sample``) or v, on the schedule's model time.

    With a discrete schedule ``t_model`` is the training index t·T − 1 ∈ [0, T−1] (a float tensor
    of shape [B], as diffusers UNets and the tutorial MLPs take); see ``Schedule.model_time``.
    A model that returns an object with ``.sample`` (diffusers outputs) or a tuple is unwrapped.
    """

    def __init__(self, model: Callable[..., Any], prediction_type: str = "epsilon",
                 schedule: Schedule | None = None) -> None:
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"unknown prediction_type {prediction_type!r}; known: {', '.join(PREDICTION_TYPES)}")
        if not callable(model):
            raise TypeError(f"model must be callable as model(x, t), got {type(model).__name__}")
        self.model, self.prediction_type, self.schedule = model, prediction_type, schedule

    def compile(self, **options: Any) -> "CallableBackbone":
        """Compile the model with ``torch.compile(**options)``; the first call then compiles (slow)."""
        self.model, self.compiled = torch.compile(self.model, **options), True
        return self

    def eps(self, x: Tensor, t: Tensor, schedule: Schedule, **cond: Any) -> Tensor:
        tm = schedule.model_time(t).to(device=x.device, dtype=x.dtype if x.dtype == torch.float64 else torch.float32)
        out = self.model(x, tm, **cond)
        if hasattr(out, "sample"):
            out = out.sample
        elif isinstance(out, (tuple, list)):
            out = out[0]
        if not isinstance(out, Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"model output {got} does not match the shape of x {tuple(x.shape)}")
        return to_epsilon(out, x, t, schedule, self.prediction_type)
