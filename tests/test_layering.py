"""The package's layers, read from its imports: no arrow climbs back.

neutral helpers (registry, tensors, errors, options) ← schedules ← samplers, guidance, backbones
← sampling ← tuning ← data and models (data, classifier; images, bundled) ← metrics ← the app (bench,
training, cli). Only cli.py imports the app modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "diffsampler"
NEUTRAL = {"registry", "tensors", "errors", "options"}
LAYERS = [  # each may import its own room and the rooms of the layers before it
    NEUTRAL,
    {"schedules"},
    {"samplers", "guidance", "backbones"},
    {"model_fn"},
    {"sampling"},
    {"tuning"},
    {"learned"},
    {"data", "classifier"},
    {"images", "bundled"},
    {"metrics"},
    {"bench", "training"},
    {"cli", "__init__"},
    {"__main__"},
]
APP = {"bench": {"cli"}, "training": {"cli"}, "cli": {"__main__"}}  # app module: who may import it


def _room(module: str) -> str:
    """``diffsampler.samplers.ddim`` → ``samplers``; the package itself (or a name in it) → ``__init__``."""
    parts = module.split(".")
    room = parts[1] if len(parts) > 1 else "__init__"
    return room if (SRC / room).is_dir() or (SRC / f"{room}.py").is_file() else "__init__"


def _imports(path: Path) -> set[str]:
    """The package modules a source file imports (relative imports resolved)."""
    module = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    if path.name == "__init__.py":
        module = package
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names] if not node.module else [target]
            found.update(n for n in names if n.startswith("diffsampler"))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("diffsampler"))
    return {f for f in found if _room(f) != _room(module) or module == "diffsampler"}


def _layer(room: str) -> int:
    return next(i for i, rooms in enumerate(LAYERS) if room in rooms)


FILES = sorted(SRC.rglob("*.py"))


def test_every_room_has_a_layer() -> None:
    rooms = {_room(".".join(p.relative_to(SRC.parent).with_suffix("").parts)) for p in FILES}
    assert rooms <= set().union(*LAYERS), rooms - set().union(*LAYERS)


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(SRC)) for p in FILES])
def test_imports_point_down(path: Path) -> None:
    own = _room(".".join(path.relative_to(SRC.parent).with_suffix("").parts))
    for target in _imports(path):
        room = _room(target)
        if room == "__init__" or room == own:
            continue
        assert _layer(room) < _layer(own) or (own == "__init__"), f"{path.relative_to(SRC)} imports {target}"
        if room in APP:
            assert own in APP[room], f"{path.relative_to(SRC)} imports the app module {target}"


def test_the_check_sees_a_climbing_arrow(tmp_path) -> None:
    """A sampler that imports the bench is caught (the check can fail)."""
    bad = SRC / "samplers" / "ddim.py"
    imports = _imports(bad) | {"diffsampler.bench"}
    assert any(_layer(_room(t)) >= _layer("samplers") for t in imports if _room(t) not in ("samplers", "__init__"))


def _module(path: Path) -> str:
    name = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def _graph() -> dict[str, set[str]]:
    """Module → the package modules it imports (a name imported from a package counts as its submodule where one
    exists), every import inside functions too: a lazy import is an arrow all the same."""
    modules = {_module(p) for p in FILES}
    graph = {}
    for p in FILES:
        targets = set()
        for t in _all_imports(p):
            while t not in modules and "." in t:
                t = t.rsplit(".", 1)[0]
            if t in modules:
                targets.add(t)
        graph[_module(p)] = targets - {_module(p)}
    return graph


def _all_imports(path: Path) -> set[str]:
    module = _module(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            found.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {f for f in found if f.startswith("diffsampler")}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, or None (depth-first search; package __init__ modules that only re-export their own
    submodules are left out, as importing ``pkg.sub`` runs ``pkg/__init__`` by design)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if n.startswith(m + ".") or m.startswith(n + "."):
                continue  # a package and its own submodules
            if state.get(n) == 1:
                return stack[stack.index(n) :] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycles_inside_a_folder_either() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, " → ".join(cycle)


def test_the_cycle_check_sees_a_cycle() -> None:
    assert _cycle({"a.x": {"a.y"}, "a.y": {"a.x"}}) == ["a.x", "a.y", "a.x"]
    assert _cycle({"a.x": {"a.y"}, "a.y": set()}) is None
