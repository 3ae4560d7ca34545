r"""What a network predicts, converted at (x, t) through the schedule's x_t = a·x_0 + b·ε.

ε (``epsilon``), x̂_0 (``sample``), v = a·ε − b·x_0 (``v_prediction``), u = ε − x_0 (``flow``,
diffusers' ``flow_prediction``): each is linear in the others at fixed x and t.
"""

from __future__ import annotations

from torch import Tensor

from ..tensors import bcast
from .base import Schedule

__all__ = ["PREDICTION_TYPES", "prediction_type_of", "convert", "from_epsilon"]

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction", "flow")
_ALIASES = {"flow_prediction": "flow"}  # diffusers' name in DPM-Solver and UniPC configs


def prediction_type_of(name: str) -> str:
    """A known prediction type (diffusers' ``flow_prediction`` is ``flow``), or a one-line error."""
    name = _ALIASES.get(name, name)
    if name not in PREDICTION_TYPES:
        raise ValueError(f"unknown prediction_type {name!r}; known: {', '.join(PREDICTION_TYPES)}")
    return name


def convert(out: Tensor, x: Tensor, t: Tensor, schedule: Schedule, prediction_type: str, to: str = "epsilon") -> Tensor:
    """A model output of ``prediction_type`` at (x, t) as ε (``to="epsilon"``) or x̂_0 (``to="sample"``)."""
    kind = prediction_type_of(prediction_type)
    if kind == to:
        return out
    a, b = bcast(schedule.signal(t), x), bcast(schedule.noise(t), x)
    if kind == "epsilon":
        return (x - b * out) / a
    if kind == "sample":
        return (x - a * out) / b
    if kind == "v_prediction":
        n = a * a + b * b
        return (a * out + b * x) / n if to == "epsilon" else (a * x - b * out) / n
    return (x + a * out) / (a + b) if to == "epsilon" else (x - b * out) / (a + b)


def from_epsilon(eps: Tensor, x: Tensor, t: Tensor, schedule: Schedule, prediction_type: str) -> Tensor:
    """The ``prediction_type`` output that ``convert`` maps to ``eps`` at (x, t): with x̂_0 = (x − b·ε)/a,
    x̂_0 itself, v = a·ε − b·x̂_0 or u = ε − x̂_0."""
    kind = prediction_type_of(prediction_type)
    if kind == "epsilon":
        return eps
    a, b = bcast(schedule.signal(t), x), bcast(schedule.noise(t), x)
    x0 = (x - b * eps) / a
    return x0 if kind == "sample" else a * eps - b * x0 if kind == "v_prediction" else eps - x0
