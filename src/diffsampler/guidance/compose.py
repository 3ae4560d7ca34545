"""Composition of guidances: ``Compose([inner, …, outer])`` wraps ε with each in turn.

A guidance that wraps a paired ε (CFG++) must keep its ``pair``; one that would drop it is an error."""

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

    @property
    def zero_snr(self) -> bool:
        """Able to guide from zero SNR when every part is."""
        return all(getattr(g, "zero_snr", False) for g in self.guidances)

    def __call__(self, eps: Any, schedule: Schedule, backbone: Any = None) -> Any:
        for g in self.guidances:
            inner, eps = eps, g(eps, schedule, backbone)
            if hasattr(inner, "pair") and not hasattr(eps, "pair"):
                raise ValueError(f"compose: {type(g).__name__} cannot wrap a guidance that re-noises with a second "
                                 "ε (cfg-pp); of the built-in guidances only dynamic-thresholding can")
        return eps
