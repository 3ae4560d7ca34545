"""Guidance: wrappers that turn an ε-function into a guided ε-function, so any guidance runs with any sampler.

A guidance is a callable ``guidance(eps, schedule) -> eps'`` where ``eps(x, t, **cond)`` is the
backbone's ε-function with conditioning passed by keyword.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from torch import Tensor

from ..registry import Registry
from ..schedules import Schedule

CondEpsFn = Callable[..., Tensor]


class Guidance(Protocol):
    def __call__(self, eps: CondEpsFn, schedule: Schedule) -> CondEpsFn: ...


GUIDANCE: Registry[Any] = Registry("guidance", "guidance")

__all__ = ["GUIDANCE", "Guidance", "CondEpsFn"]
