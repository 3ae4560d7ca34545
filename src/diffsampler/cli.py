"""The ``diffsampler`` command line (typer): the only place where strings become objects."""

from __future__ import annotations

from enum import Enum

import typer

from .backbones import BACKBONES
from .guidance import GUIDANCE
from .registry import Registry, describe
from .samplers import SAMPLERS
from .schedules import SCHEDULES, SPACINGS

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Samplers and schedules for diffusion models.")


class Kind(str, Enum):
    samplers = "samplers"
    schedules = "schedules"
    spacings = "spacings"
    guidance = "guidance"
    backbones = "backbones"


REGISTRIES: dict[Kind, Registry] = {Kind.samplers: SAMPLERS, Kind.schedules: SCHEDULES, Kind.spacings: SPACINGS,
                                    Kind.guidance: GUIDANCE, Kind.backbones: BACKBONES}


@app.command("list")
def list_(kind: Kind | None = typer.Argument(None, help="What to list; all kinds when left out.")) -> None:
    """List registered plugins: name, origin (built-in or the plugin's distribution), description."""
    for k in [kind] if kind else list(Kind):
        reg = REGISTRIES[k]
        typer.echo(f"{k.value}:")
        for name in reg.names():
            try:
                text = describe(reg.get(name))
            except ImportError as exc:
                text = f"(failed to load: {exc})"
            typer.echo(f"  {name:<18} {reg.origin(name):<16} {text}")


@app.command()
def version() -> None:
    """Print the installed version."""
    from . import __version__

    typer.echo(__version__)


def main() -> None:
    app()
