"""Named plugin registries: built-ins register with a decorator, third parties through entry points."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Callable, Generic, Iterator, TypeVar

__all__ = ["Registry", "UnknownNameError", "BUILTIN", "declare", "declared_meta", "import_submodules"]

T = TypeVar("T")
BUILTIN = "built-in"


class UnknownNameError(KeyError):
    """A registry lookup of a name that is not registered; the message lists the known names."""

    def __init__(self, noun: str, name: str, known: list[str]) -> None:
        super().__init__(f"unknown {noun} {name!r}; known: {', '.join(known) or '(none)'}")
        self.noun, self.name, self.known = noun, name, known

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


@dataclass(frozen=True)
class _Plugin:
    entry_point: EntryPoint
    origin: str


class Registry(Generic[T]):
    """A name → object map for one kind of plugin (samplers, schedules, guidance, backbones).

    Built-ins are added with ``@REGISTRY.register("name")``. Third-party packages declare an
    entry point in the group ``diffsampler.<kind>``; those are listed by name without importing
    them and loaded on first ``get``. The entry-point scan is cached per ``sys.path``.
    """

    def __init__(self, noun: str, group: str, meta: dict[str, Any] | None = None) -> None:
        self.noun = noun
        self.group = f"diffsampler.{group}"
        self.meta_defaults: dict[str, Any] = dict(meta or {})
        self._meta: dict[str, dict[str, Any]] = {}
        self._items: dict[str, T] = {}
        self._origins: dict[str, str] = {}
        self._plugins: dict[str, _Plugin] = {}
        self._loaded: dict[tuple[str, str], T] = {}
        self._scanned_for: tuple[str, ...] | None = None

    def register(self, name: str, obj: T | None = None, *, replace: bool = False, **meta: Any) -> Any:
        """Register ``obj`` under ``name`` with its metadata (see ``meta_defaults``); without ``obj``, a decorator."""
        self._check_meta(name, meta)
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise ValueError(f"a {self.noun} name must be a non-empty string without surrounding spaces, got {name!r}")

        def add(item: T) -> T:
            if not callable(item):
                raise TypeError(
                    f"{self.noun} {name!r} must be callable (a function or a class), got {type(item).__name__}"
                )
            if name in self._items and not replace:
                raise ValueError(f"{self.noun} {name!r} is already registered; pass replace=True to override it")
            self._items[name] = item
            self._origins[name] = BUILTIN
            self._meta[name] = meta
            return item

        return add if obj is None else add(obj)

    def _scan(self) -> dict[str, _Plugin]:
        key = tuple(sys.path)
        if self._scanned_for != key:
            plugins: dict[str, _Plugin] = {}
            for ep in entry_points(group=self.group):
                dist = getattr(ep, "dist", None)
                origin = dist.metadata["Name"] if dist is not None else ep.module
                plugins.setdefault(ep.name, _Plugin(ep, origin))
            self._plugins, self._scanned_for = plugins, key
        return self._plugins

    def names(self) -> list[str]:
        """All registered names, built-ins and entry points, sorted."""
        return sorted(set(self._items) | set(self._scan()))

    def origin(self, name: str) -> str:
        """``"built-in"`` or the name of the distribution that provides ``name``."""
        if name in self._origins:
            return self._origins[name]
        if name in self._scan():
            return self._scan()[name].origin
        raise self._unknown(name)

    def get(self, name: str) -> T:
        """The object registered as ``name``; loads an entry point on first use."""
        if name in self._items:
            return self._items[name]
        plugin = self._scan().get(name)
        if plugin is None:
            raise self._unknown(name)
        key = (name, plugin.entry_point.value)
        if key not in self._loaded:
            try:
                self._loaded[key] = plugin.entry_point.load()
            except (Exception, SystemExit) as exc:  # a broken plugin must not look like an unknown name, nor exit
                raise ImportError(f"{self.noun} plugin {name!r} from {plugin.origin} failed to load: {exc}") from exc
        return self._loaded[key]

    def _check_meta(self, name: Any, meta: dict[str, Any]) -> None:
        unknown = sorted(set(meta) - set(self.meta_defaults))
        if unknown:
            raise TypeError(
                f"{self.noun} {name!r} declares unknown metadata {', '.join(unknown)}; a {self.noun} "
                f"declares {', '.join(self.meta_defaults) or 'nothing'}"
            )

    def meta(self, name: str) -> dict[str, Any]:
        """What ``name`` declared (a built-in at registration, a plugin with ``declare``), over the defaults."""
        declared = self._meta[name] if name in self._items else declared_meta(self.get(name))
        self._check_meta(name, declared)
        return {**self.meta_defaults, **declared}

    def describe(self, name: str) -> str:
        """One line about ``name``: a built-in's docstring; for a plugin, where it lives (nothing is imported)."""
        if name in self._items:
            return describe(self._items[name])
        plugin = self._scan().get(name)
        if plugin is None:
            raise self._unknown(name)
        return f"plugin {plugin.entry_point.value}"

    def _unknown(self, name: str) -> UnknownNameError:
        return UnknownNameError(self.noun, name, self.names())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.group!r}, names={self.names()})"


_DECLARED = "__diffsampler_meta__"


def declare(**meta: Any) -> Callable[[T], T]:
    """Decorator for plugins loaded through entry points: ``@declare(spacing="karras")`` is what a built-in
    says with ``REGISTRY.register(name, spacing="karras")``."""

    def mark(obj: T) -> T:
        setattr(obj, _DECLARED, dict(meta))
        return obj

    return mark


def declared_meta(obj: Any) -> dict[str, Any]:
    """The metadata ``obj`` declared with ``declare`` (empty if none)."""
    return dict(getattr(obj, _DECLARED, {}))


def import_submodules(package: str, path: list[str]) -> None:
    """Import every module of a package, so that a new file's ``@REGISTRY.register`` line is all it takes."""
    for info in pkgutil.iter_modules(path):
        importlib.import_module(f"{package}.{info.name}")


def describe(obj: Callable[..., Any] | type) -> str:
    """First line of an object's docstring (for listings)."""
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0].replace("``", "") if doc else ""
