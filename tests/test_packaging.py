"""What the package declares matches what it does: its imports, its version, its typing marker, its wheel."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from importlib.metadata import packages_distributions, version
from pathlib import Path

import pytest
import tomllib

import diffsampler as ds

ROOT = Path(__file__).parents[1]
SRC = ROOT / "src" / "diffsampler"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    """``torch>=2.1`` → ``torch``, normalised as distribution names are compared."""
    for stop in "<>=!~[; ":
        requirement = requirement.split(stop)[0]
    return requirement.strip().lower().replace("_", "-")


def _third_party_imports() -> set[str]:
    """Top-level names of every module the package imports that is neither its own nor the standard library's."""
    found = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m != "diffsampler" and m not in sys.stdlib_module_names}


def test_every_imported_distribution_is_declared() -> None:
    """Each third-party import belongs to a distribution the project requires, or an optional extra names
    (transformers: ``text``), so a plain install never meets an undeclared import."""
    declared = {_name(r) for r in PROJECT["dependencies"]}
    optional = {_name(r) for extra in PROJECT["optional-dependencies"].values() for r in extra}
    owners = packages_distributions()
    missing = {}
    for module in _third_party_imports():
        dists = {_name(d) for d in owners.get(module, [module])}
        if not dists & (declared | optional):
            missing[module] = sorted(dists)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_the_check_sees_an_undeclared_import() -> None:
    assert "PIL" in _third_party_imports() and "pillow" in {_name(r) for r in PROJECT["dependencies"]}


def test_the_version_is_written_once() -> None:
    """``__version__`` comes from the installed metadata, which pyproject.toml writes; no module repeats it."""
    assert ds.__version__ == version("diffsampler") == PROJECT["version"]
    init = (SRC / "__init__.py").read_text()
    assert PROJECT["version"] not in init


def test_no_tracked_file_is_ignored() -> None:
    """Files that .gitignore names (bench folders' .lock files) are not in the repository."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(
        ["git", "ls-files", "-ci", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert tracked == []


@pytest.mark.slow
def test_the_wheel_ships_the_typing_marker_and_the_models_but_no_test_helpers(tmp_path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
    )
    (wheel,) = tmp_path.glob("diffsampler-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "diffsampler/py.typed" in names
    assert "diffsampler/bundled/digits/unet/diffusion_pytorch_model.safetensors" in names
    assert not [n for n in names if n.startswith("tests/") or "tiny" in n], names
