"""Guidance: wrappers that turn an ε-function into a guided ε-function, so any guidance runs with any sampler.

A guidance object is called as ``guidance(eps, schedule, backbone)`` and returns a new
``eps(x, t, **cond)``; ``eps`` is the backbone's ε-function with conditioning by keyword
(``class_labels``, ``encoder_hidden_states``, …). Guidances nest: ``Compose([a, b])``.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from torch import Tensor

from ..registry import Registry
from ..schedules import Schedule

CondEpsFn = Callable[..., Tensor]


class Guidance(Protocol):
    def __call__(self, eps: CondEpsFn, schedule: Schedule, backbone: Any = None) -> CondEpsFn: ...


GUIDANCE: Registry[Any] = Registry("guidance", "guidance")

from .cfg import CFG  # noqa: E402
from .classifier import ClassifierGuidance  # noqa: E402
from .compose import Compose  # noqa: E402

GUIDANCE.register("cfg", CFG)
GUIDANCE.register("classifier", ClassifierGuidance)
GUIDANCE.register("compose", Compose)

__all__ = ["GUIDANCE", "Guidance", "CondEpsFn", "CFG", "ClassifierGuidance", "Compose"]
