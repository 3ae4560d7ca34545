"""Noise schedules on continuous t ∈ [0, 1] (VP, VE/EDM, rectified flow), and the time grids samplers walk on."""

from __future__ import annotations

from ..registry import Registry
from .base import DiscreteSchedule, Schedule

SCHEDULES: Registry[type[Schedule]] = Registry("schedule", "schedules")

from . import sigma_tools  # noqa: E402
from .continuous import SigmoidAlphaBar, VPContinuous  # noqa: E402
from .discrete import Cosine, Linear, ScaledLinear, Sigmoid  # noqa: E402
from .families import VE, RectifiedFlow  # noqa: E402
from .grids import SPACINGS, check_grid, make_grid  # noqa: E402

SCHEDULES.register("linear", Linear)
SCHEDULES.register("scaled-linear", ScaledLinear)
SCHEDULES.register("cosine", Cosine)
SCHEDULES.register("sigmoid", Sigmoid)
SCHEDULES.register("sigmoid-alphabar", SigmoidAlphaBar)
SCHEDULES.register("vp-continuous", VPContinuous)

from ..registry import import_submodules  # noqa: E402

import_submodules(__name__, __path__)  # a spacing or schedule in a file of its own registers itself

__all__ = [
    "SCHEDULES",
    "sigma_tools",
    "SPACINGS",
    "Schedule",
    "DiscreteSchedule",
    "Linear",
    "ScaledLinear",
    "Cosine",
    "Sigmoid",
    "SigmoidAlphaBar",
    "VPContinuous",
    "VE",
    "RectifiedFlow",
    "make_grid",
    "check_grid",
]
