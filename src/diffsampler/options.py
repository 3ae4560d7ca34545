"""Plugin options: parsing ``key=value`` text and checking values against a plugin's signature."""

from __future__ import annotations

import inspect
import numbers
import types
import typing
from typing import Any, Callable, Literal, Union

__all__ = ["parse_value", "parse_pairs", "check_options", "accepted_options"]

_INTERNAL = ("noise_sampler", "callback")


def parse_value(text: str) -> Any:
    """``true``/``false`` → bool, ``none`` → None, then int, then float, else the text itself."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_pairs(pairs: list[str]) -> dict[str, Any]:
    """``["k=v", …]`` → ``{k: parse_value(v)}``; a pair without ``=`` is a ValueError."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{pair!r} is not key=value")
        out[key.strip()] = parse_value(value)
    return out


def accepted_options(fn: Callable[..., Any], keyword_only: bool = True) -> list[str] | None:
    """The options of ``fn``: its keyword-only parameters (a sampler's), or all named ones (a class's
    constructor, with ``keyword_only=False``); None when it takes ``**kwargs``: anything goes."""
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    kinds = (
        (inspect.Parameter.KEYWORD_ONLY,)
        if keyword_only
        else (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    )
    return [p for p, v in params.items() if v.kind in kinds and p not in _INTERNAL]


def _expected(hint: Any, value: Any) -> str | None:
    """None when ``value`` fits the annotation ``hint``, else a description of what it takes."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        results = [_expected(h, value) for h in typing.get_args(hint)]
        return None if any(r is None for r in results) else " or ".join(r for r in results if r)
    if origin is Literal:
        allowed = typing.get_args(hint)
        return None if value in allowed else "one of " + ", ".join(map(repr, allowed))
    if hint is type(None):
        return None if value is None else "none"
    if hint is bool:
        return None if isinstance(value, bool) else "true or false"
    if hint is int:
        return None if isinstance(value, numbers.Integral) and not isinstance(value, bool) else "an integer"
    if hint is float:
        return None if isinstance(value, numbers.Real) and not isinstance(value, bool) else "a number"
    if hint is str:
        return None if isinstance(value, str) else "a string"
    return None  # an annotation this check does not model (tuple, a class, …): left to the plugin


def check_options(
    kind: str, name: str, fn: Callable[..., Any], options: dict[str, Any], keyword_only: bool = True
) -> None:
    """Raise TypeError for an option ``fn`` does not take, or a value its annotation rules out."""
    accepted = accepted_options(fn, keyword_only)
    if accepted is None:
        return
    for key in options:
        if key not in accepted:
            raise TypeError(f"unknown option {key!r} for {kind} {name!r}; accepted: {', '.join(accepted) or '(none)'}")
    try:
        hints = typing.get_type_hints(fn.__init__ if isinstance(fn, type) else fn)
    except Exception:  # unresolvable annotations (a plugin's forward references): names are still checked
        return
    for key, value in options.items():
        want = _expected(hints[key], value) if key in hints else None
        if want is not None:
            raise TypeError(f"option {key!r} of {kind} {name!r} takes {want}, got {value!r}")
