"""Errors shared by every layer; this module imports nothing of the package."""

from __future__ import annotations

__all__ = ["ModelLoadError"]


class ModelLoadError(ValueError):
    """A model that cannot be loaded: missing, unreadable, of an unsupported kind, or pickle without permission."""
