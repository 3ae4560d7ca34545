"""Guidance: wrappers that turn an ε-function into a guided ε-function, so any guidance runs with any sampler.

A guidance object is called as ``guidance(eps, schedule, backbone)`` and returns a new
``eps(x, t, **cond)``; ``eps`` is the backbone's counted ε-function with conditioning by keyword
(``class_labels``, ``encoder_hidden_states``, …; ``negative_<k>`` is k's unconditional half), and
``eps.of(other)`` the same for a second backbone. What it can do it declares as plain attributes:
``renoise``, ``zero_snr``, ``second_network`` (``Guidance``). Guidances nest: ``Compose([a, b])``.
Each file registers its guidance where it is defined (``@GUIDANCE.register(name)``).
"""

from __future__ import annotations

from ..registry import import_submodules
from .base import GUIDANCE, CondEpsFn, Guidance
from .cfg import CFG
from .classifier import ClassifierGuidance
from .compose import Compose

import_submodules(__name__, __path__)

__all__ = ["GUIDANCE", "Guidance", "CondEpsFn", "CFG", "ClassifierGuidance", "Compose"]
