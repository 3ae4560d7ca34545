"""The command line: listing plugins."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from diffsampler.cli import app

runner = CliRunner()


def test_list_shows_every_kind_with_origin_and_description() -> None:
    r = runner.invoke(app, ["list"])
    assert r.exit_code == 0
    for header in ("samplers:", "schedules:", "spacings:", "guidance:", "backbones:"):
        assert header in r.output
    line = next(ln for ln in r.output.splitlines() if ln.strip().startswith("ddim "))
    assert "built-in" in line and "DDIM" in line


def test_list_unknown_kind_exits_2() -> None:
    r = runner.invoke(app, ["list", "widgets"])
    assert r.exit_code == 2 and "widgets" in r.output


def test_module_entry_point_runs() -> None:
    r = subprocess.run([sys.executable, "-m", "diffsampler", "list", "samplers"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "pf-ode" in r.stdout
