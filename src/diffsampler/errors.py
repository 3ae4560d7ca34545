"""Errors shared by every layer; this module imports nothing of the package."""

from __future__ import annotations

from typing import Any

__all__ = ["ModelLoadError", "BadValue"]


class ModelLoadError(ValueError):
    """A model that cannot be loaded: missing, unreadable, of an unsupported kind, or pickle without permission."""


class BadValue(ValueError):
    """A keyword's value refused, with the parts each front end words its own way: ``param``, ``value`` and
    ``reason``. In Python it reads ``param=value: reason``; the command line names its flag instead."""

    def __init__(self, param: str, value: Any, reason: str) -> None:
        super().__init__(f"{param}={value!r}: {reason}")
        self.param, self.value, self.reason = param, value, reason
