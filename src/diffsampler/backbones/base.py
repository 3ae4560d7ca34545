r"""Backbones: adapters that turn a model into an ε-function on continuous time.

A backbone offers ``eps(x, t, schedule, **cond)``: the noise prediction at the model's own
x_t = a·x_0 + b·ε, with t a [B] tensor of continuous times and a, b the schedule's ``signal`` and
``noise`` (√ᾱ and √(1−ᾱ) for a VP schedule). Models that predict something else convert through
``convert``:

    x_0-prediction ("sample"):  ε = (x − a·x̂_0)/b
    v-prediction:                ε = (a·v + b·x)/(a² + b²)      (v = a·ε − b·x_0)
    flow velocity ("flow"):      ε = (x + a·u)/(a + b)           (u = ε − x_0, SD3's flow matching)

At zero SNR (a = 0) ε is x/b whatever the data; a backbone that can still tell x̂_0 there (x_0-, v- or
flow-prediction) answers ``denoised(x, t, schedule, **cond)``, which a sampler's first step from pure noise needs.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from ..schedules import Schedule
from ..schedules.predictions import PREDICTION_TYPES, convert, from_epsilon, prediction_type_of

__all__ = [
    "Backbone",
    "NetworkBackbone",
    "CallableBackbone",
    "PREDICTION_TYPES",
    "to_epsilon",
    "convert",
    "from_epsilon",
    "prediction_type_of",
]


def to_epsilon(out: Tensor, x: Tensor, t: Tensor, schedule: Schedule, prediction_type: str) -> Tensor:
    """Convert a model output of ``prediction_type`` at (x, t) to ε."""
    return convert(out, x, t, schedule, prediction_type, "epsilon")


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

    def denoised(self, x: Tensor, t: Tensor, schedule: Schedule, **cond: Any) -> Tensor:
        """x̂_0 at (x, t), defined at zero SNR too where the model can tell it (not from ε)."""
        raise ValueError(
            f"{type(self).__name__} predicts ε, which says nothing of x_0 at zero SNR: start the "
            f"grid below t = 1, or use a model that predicts x_0, v or flow"
        )

    def compile(self, **options: Any) -> "Backbone":
        """Compile the network with ``torch.compile(**options)`` in place; the first call then compiles (slow)."""
        raise TypeError(f"{type(self).__name__} has no network to compile")


class NetworkBackbone(Backbone):
    """A network whose raw output ``_output(x, t, schedule, **cond)`` is a ``prediction_type`` prediction."""

    prediction_type: str = "epsilon"

    def _output(self, x: Tensor, t: Tensor, schedule: Schedule, **cond: Any) -> Tensor:
        raise NotImplementedError

    def eps(self, x: Tensor, t: Tensor, schedule: Schedule, **cond: Any) -> Tensor:
        return to_epsilon(self._output(x, t, schedule, **cond), x, t, schedule, self.prediction_type)

    def denoised(self, x: Tensor, t: Tensor, schedule: Schedule, **cond: Any) -> Tensor:
        if self.prediction_type == "epsilon":
            return super().denoised(x, t, schedule, **cond)
        return convert(self._output(x, t, schedule, **cond), x, t, schedule, self.prediction_type, "sample")


class CallableBackbone(NetworkBackbone):
    """Any ``model(x, t_model, **cond)`` predicting ε, x_0 (``sample``) or v, on the schedule's model time.

    With a discrete schedule ``t_model`` is the training index t·T − 1 ∈ [0, T−1] (a float tensor
    of shape [B], as diffusers UNets and the tutorial MLPs take); see ``Schedule.model_time``.
    A model that returns an object with ``.sample`` (diffusers outputs) or a tuple is unwrapped.
    """

    def __init__(
        self, model: Callable[..., Any], prediction_type: str = "epsilon", schedule: Schedule | None = None
    ) -> None:
        prediction_type = prediction_type_of(prediction_type)
        if not callable(model):
            raise TypeError(f"model must be callable as model(x, t), got {type(model).__name__}")
        self.model, self.prediction_type, self.schedule = model, prediction_type, schedule

    def compile(self, **options: Any) -> "CallableBackbone":
        """Compile the model with ``torch.compile(**options)``; the first call then compiles (slow)."""
        self.model, self.compiled = torch.compile(self.model, **options), True
        return self

    def _output(self, x: Tensor, t: Tensor, schedule: Schedule, **cond: Any) -> Tensor:
        tm = schedule.model_time(t).to(device=x.device, dtype=x.dtype if x.dtype == torch.float64 else torch.float32)
        out = self.model(x, tm, **cond)
        if hasattr(out, "sample"):
            out = out.sample
        elif isinstance(out, (tuple, list)):
            out = out[0]
        if not isinstance(out, Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"model output {got} does not match the shape of x {tuple(x.shape)}")
        return out
