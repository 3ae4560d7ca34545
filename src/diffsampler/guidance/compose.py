"""Composition of guidances: ``Compose([inner, …, outer])`` wraps ε with each in turn."""

from __future__ import annotations

from typing import Any, Sequence

from ..schedules import Schedule
from .base import GUIDANCE


@GUIDANCE.register("compose", cli=False)
class Compose:
    """Apply guidances in order, the first innermost (e.g. CFG, then classifier guidance on top)."""

    def __init__(self, guidances: Sequence[Any]) -> None:
        if not guidances:
            raise ValueError("compose needs at least one guidance")
        self.guidances = list(guidances)

    def __call__(self, eps: Any, schedule: Schedule, backbone: Any = None) -> Any:
        for g in self.guidances:
            eps = g(eps, schedule, backbone)
        return eps
