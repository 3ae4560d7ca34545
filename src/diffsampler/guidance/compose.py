"""Composition of guidances: ``Compose([inner, …, outer])`` wraps ε with each in turn.

What it can do follows from its parts: it re-noises (``renoise``) when one of them does, and then every
guidance after that one must declare ``wraps_renoise``; it guides from zero SNR when all of them can; a
guidance with a ``second_network`` must come first, where it wraps the network itself."""

from __future__ import annotations

from typing import Any, Sequence

from ..schedules import Schedule
from .base import GUIDANCE


def _can(g: Any, what: str) -> bool:
    return bool(getattr(g, what, False))


@GUIDANCE.register("compose", cli=False)
class Compose:
    """Apply guidances in order, the first innermost (e.g. CFG, then classifier guidance on top)."""

    def __init__(self, guidances: Sequence[Any]) -> None:
        if not guidances:
            raise ValueError("compose needs at least one guidance")
        self.guidances = list(guidances)
        for i, g in enumerate(self.guidances):
            if i > 0 and _can(g, "second_network"):
                raise ValueError(f"compose: {type(g).__name__} evaluates a second network, so it must come first")
            if any(_can(h, "renoise") for h in self.guidances[:i]) and not _can(g, "wraps_renoise"):
                raise ValueError(
                    f"compose: {type(g).__name__} cannot wrap a guidance that re-noises with a second "
                    "ε (cfg-pp); of the built-in guidances only dynamic-thresholding can"
                )
        self.renoise = any(_can(g, "renoise") for g in self.guidances)
        self.zero_snr = all(_can(g, "zero_snr") for g in self.guidances)
        self.second_network = _can(self.guidances[0], "second_network")

    def __call__(self, eps: Any, schedule: Schedule, backbone: Any = None) -> Any:
        for g in self.guidances:
            eps = g(eps, schedule, backbone)
        return eps
