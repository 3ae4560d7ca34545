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
