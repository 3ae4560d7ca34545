"""The README and the documentation run as written: every Python block is executed, every command line is
a valid one, and the generated tables name every built-in plugin."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest
import torch

import diffsampler as ds
from diffsampler.cli import app
from diffsampler.metrics import METRICS

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
sys.path.insert(0, str(ROOT / "docs"))
import gen  # noqa: E402


def blocks(page: Path) -> list[tuple[str, str]]:
    return re.findall(r"```(\w+)\n(.*?)```", page.read_text(), flags=re.S)


PYTHON = [(p, code) for p in PAGES for lang, code in blocks(p) if lang == "python"]


def commands(page: Path) -> list[str]:
    return [
        ln.split("  #")[0].strip()
        for lang, code in blocks(page)
        if lang == "bash"
        for ln in code.replace("\\\n", " ").splitlines()
        if ln.startswith("diffsampler ")
    ]


COMMANDS = [line for p in PAGES for line in commands(p)]


def test_the_pages_have_code() -> None:
    assert len(PYTHON) >= 5 and len(COMMANDS) >= 15
    assert {lang for p in PAGES for lang, _ in blocks(p)} <= {"python", "bash", "toml", "text"}


def test_the_readme_is_a_screenful() -> None:
    text = README.read_text()
    assert len(text.encode()) <= 8192
    assert len([c for lang, c in blocks(README) if lang == "python"]) == 1
    assert len(commands(README)) == 3
    setup = [code for lang, code in blocks(README) if lang == "bash"][0]
    assert setup.startswith("# install, then generate") and setup in (ROOT / "docs" / "quickstart.md").read_text()


@pytest.mark.parametrize("page, code", PYTHON, ids=[f"{p.stem}-{i}" for i, (p, _) in enumerate(PYTHON)])
def test_python_block_runs_as_written(page: Path, code: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT))  # a block may import the test suite's builders, as from a checkout
    try:
        exec(compile(code, str(page), "exec"), {"__name__": "docs"})
    finally:
        torch._dynamo.reset()  # a block may leave a compile wrapper behind; keep it out of later tests


@pytest.mark.parametrize("line", COMMANDS)
def test_command_line_is_valid(line: str) -> None:
    """Each documented command parses (its options exist and take such values); `--help` stops before running."""
    from typer.main import get_command

    words = shlex.split(line)[1:]
    words = [w for w in words if not w.startswith("[")]  # `list [samplers|…]`: the optional argument left out
    command = get_command(app)
    ctx = command.make_context("diffsampler", words[:1] + ["--help"], resilient_parsing=True)
    sub = command.get_command(ctx, words[0])
    assert sub is not None, line
    sub.make_context(words[0], words[1:], parent=ctx, resilient_parsing=False)


def builtin(registry) -> list[str]:
    return [n for n in registry.names() if registry.origin(n) == "built-in"]


def first_column(table: str) -> list[str]:
    return [ln.split("|")[1].strip().strip("`") for ln in table.splitlines()[2:]]


@pytest.mark.parametrize(
    "kind, registry",
    [
        ("samplers", ds.SAMPLERS),
        ("spacings", ds.SPACINGS),
        ("schedules", ds.SCHEDULES),
        ("guidance", ds.GUIDANCE),
        ("metrics", METRICS),
        ("backbones", ds.BACKBONES),
    ],
)
def test_generated_table_names_every_built_in(kind: str, registry) -> None:
    assert first_column(gen.TABLES[kind]()) == builtin(registry)


def test_sampler_table_states_nfe_spacing_and_options() -> None:
    rows = {ln.split(" | ")[0].strip("| `"): ln.split(" | ") for ln in gen.samplers_table().splitlines()[2:]}
    assert rows["heun"][3:5] == ["2N − 1", "trailing"] and rows["pndm"][3:5] == ["N + 9", "leading"]
    assert rows["ddim"][2] == "Song, Meng & Ermon 2021"
    assert "`eta: float = 0.0`" in rows["ddim"][5] and "noise_sampler" not in rows["ddim"][5]
    assert {n: r[4] for n, r in rows.items()} == {n: ds.SAMPLERS.meta(n)["spacing"] for n in builtin(ds.SAMPLERS)}


def test_cli_reference_has_every_command_and_option() -> None:
    from typer.main import get_command

    text = gen.cli_reference()
    group = get_command(app)
    for name, command in group.commands.items():
        assert f"## `diffsampler {name}`" in text
        for p in command.params:
            assert all(f"`{o}`" in text for o in p.opts), (name, p.opts)


def test_every_page_is_in_the_nav_and_every_marker_expands() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in PAGES[1:]:
        assert f": {page.name}" in nav, page.name
        assert "<!--" not in gen.expand(page.read_text()), page.name


def test_spacing_sources_name_every_built_in_spacing() -> None:
    section = (ROOT / "docs" / "spacings.md").read_text().split("| name | N start times |", 1)[1].split("\n\n")[0]
    named = {
        name
        for ln in section.splitlines()
        if ln.startswith("| `")
        for name in re.findall(r"`([a-z0-9-]+)`", ln.split("|")[1])
    }
    assert set(builtin(ds.SPACINGS)) <= named, set(builtin(ds.SPACINGS)) - named
