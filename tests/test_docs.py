"""The README's code runs as written: every Python block is executed, every command line is a valid one."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch

from diffsampler.cli import app

README = Path(__file__).parents[1] / "README.md"
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README.read_text(), flags=re.S)
PYTHON = [code for lang, code in BLOCKS if lang == "python"]
COMMANDS = [
    ln.split("  #")[0].strip()
    for lang, code in BLOCKS
    if lang == "bash"
    for ln in code.replace("\\\n", " ").splitlines()
    if ln.startswith("diffsampler ")
]


def test_the_readme_has_code() -> None:
    assert len(PYTHON) >= 2 and len(COMMANDS) >= 8


@pytest.mark.parametrize("code", PYTHON, ids=[f"python-{i}" for i in range(len(PYTHON))])
def test_python_block_runs_as_written(code: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    try:
        exec(compile(code, str(README), "exec"), {"__name__": "readme"})
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


def test_sampler_table_states_the_default_spacings() -> None:
    """The README's sampler table names every built-in sampler with the default spacing it is registered with."""
    from diffsampler import SAMPLERS

    section = README.read_text().split("### Samplers", 1)[1].split("\n\n", 2)[1]
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in section.splitlines() if ln.startswith("| `")]
    table = {cells[0].strip("`"): cells[-1] for cells in rows}
    builtin = [name for name in SAMPLERS.names() if SAMPLERS.origin(name) == "built-in"]
    assert table == {name: SAMPLERS.meta(name)["spacing"] for name in builtin}


def test_spacing_table_names_every_built_in_spacing() -> None:
    from diffsampler import SPACINGS

    section = README.read_text().split("### Spacings", 1)[1].split("\n\n", 3)[2]
    named = {
        name
        for ln in section.splitlines()
        if ln.startswith("| `")
        for name in re.findall(r"`([a-z0-9-]+)`", ln.split("|")[1])
    }
    builtin = {name for name in SPACINGS.names() if SPACINGS.origin(name) == "built-in"}
    assert builtin <= named, builtin - named
