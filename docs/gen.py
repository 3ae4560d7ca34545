"""The documentation's generated parts: registry tables, the CLI reference, the bundled models' cards."""

from __future__ import annotations

import enum
import inspect
import re
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "src" / "diffsampler" / "bundled"
NAME = r"[A-Z][\w’'-]+"
CITATION = re.compile(rf"{NAME}(?:, {NAME})*(?: et al\.| & {NAME})?,? (?:19|20)\d\d")
SKIP = {"self", "noise_sampler", "callback", "schedule", "steps", "backbone", "eps", "eps_fn", "x", "grid"}


def cell(text: str) -> str:
    """Text that stays inside one markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def paper(obj: Any) -> str:
    """The first citation (``Author et al. YEAR``) in an object's docstring or its module's first line, or —."""
    module_doc = (getattr(inspect.getmodule(obj), "__doc__", None) or "").strip()
    for doc in (inspect.getdoc(obj), module_doc.split("\n", 1)[0]):
        found = CITATION.search(doc or "")
        if found:
            return re.sub(r",? (\d{4})$", r" \1", found.group(0))
    return "—"


def options(fn: Callable[..., Any], keyword_only: bool) -> str:
    """``name: type = default`` for each option a plugin takes, as its signature states them."""
    target = fn.__init__ if inspect.isclass(fn) else fn
    out = []
    for name, p in inspect.signature(target).parameters.items():
        if name in SKIP or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if keyword_only and p.kind is not p.KEYWORD_ONLY:
            continue
        hint = p.annotation if isinstance(p.annotation, str) else inspect.formatannotation(p.annotation)
        hint = "" if p.annotation is p.empty else f": {hint}"
        default = "" if p.default is p.empty else f" = {p.default!r}"
        out.append(f"`{name}{hint}{default}`")
    return ", ".join(out) or "—"


def nfe_formula(name: str) -> str:
    """NFE for N steps at the default options, counted on a free model at N = 4, 5, 6 (e.g. ``2N − 1``)."""
    from diffsampler import SCHEDULES
    from diffsampler.sampling import nfe_for_steps

    schedule = SCHEDULES.get("linear")()
    counts = [nfe_for_steps(name, schedule, n) for n in (4, 5, 6)]
    slope = counts[1] - counts[0]
    if counts[2] - counts[1] != slope or slope < 1:
        return ", ".join(f"{n}: {c}" for n, c in zip((4, 5, 6), counts))
    offset = counts[0] - 4 * slope
    lead = "N" if slope == 1 else f"{slope}N"
    return lead + ("" if offset == 0 else f" + {offset}" if offset > 0 else f" − {-offset}")


def _rows(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _builtin(registry: Any) -> list[str]:
    return [n for n in registry.names() if registry.origin(n) == "built-in"]


def samplers_table() -> str:
    from diffsampler import SAMPLERS

    rows = []
    for n in _builtin(SAMPLERS):
        fn, meta = SAMPLERS.get(n), SAMPLERS.meta(n)
        rows.append(
            [
                f"`{n}`",
                SAMPLERS.describe(n),
                paper(fn),
                "adaptive" if meta["adaptive"] else nfe_formula(n),
                meta["spacing"],
                options(fn, keyword_only=True),
            ]
        )
    return _rows(["name", "what", "paper", "NFE for N steps", "default spacing", "options"], rows)


def plain_table(registry: Any) -> str:
    """Name, docstring line, paper and options of every built-in in a registry of plain functions or classes."""
    rows = [
        [f"`{n}`", registry.describe(n), paper(registry.get(n)), options(registry.get(n), False)]
        for n in _builtin(registry)
    ]
    return _rows(["name", "what", "paper", "options"], rows)


def metrics_table() -> str:
    from diffsampler.metrics import METRICS

    rows = []
    for n in _builtin(METRICS):
        fn, meta = METRICS.get(n), METRICS.meta(n)
        better = "higher" if meta.get("higher") else "lower"
        rows.append([f"`{n}`", meta.get("label") or METRICS.describe(n), better, options(fn, False)])
    return _rows(["name", "what", "better", "options"], rows)


def backbones_table() -> str:
    from diffsampler import BACKBONES

    return _rows(["name", "what"], [[f"`{n}`", BACKBONES.describe(n)] for n in _builtin(BACKBONES)])


def cli_reference() -> str:
    """Every command's help and options, from the typer application itself."""
    import click
    from typer.main import get_command

    from diffsampler.cli import app

    group = get_command(app)
    ctx = click.Context(group, info_name="diffsampler")
    parts = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        usage = " ".join(command.collect_usage_pieces(ctx))
        parts.append(
            f"## `diffsampler {name}`\n\n{inspect.cleandoc(command.help or '')}\n\n`diffsampler {name} {usage}`\n"
        )
        rows = []
        for p in command.params:
            if p.name == "help":
                continue
            flags = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
            default = "" if p.default is None or p.required else repr(p.default)
            hint = p.type_descriptor.annotation
            kind = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
            if isinstance(hint, type) and issubclass(hint, enum.Enum):
                kind = " \\| ".join(str(v.value) for v in hint)
            kind = f"{kind} (argument)" if p.param_type_name == "argument" else kind
            rows.append([flags, kind, default, getattr(p, "help", "") or ""])
        if rows:
            parts.append(_rows(["option", "type", "default", "what"], rows) + "\n")
    return "\n".join(parts)


def card(name: str) -> str:
    """A bundled model's card, its headings one level down, its images under ``models/<name>/``."""
    text = (BUNDLED / name / "README.md").read_text()
    text = re.sub(r"^(#+) ", r"#\1 ", text, flags=re.M)
    text = re.sub(r"\]\((?!https?:)([\w./-]+\.png)\)", rf"](models/{name}/\1)", text)
    return f'<a id="{name}"></a>\n\n{text}'


def card_images() -> list[tuple[str, Path]]:
    """(site path, file) of every image a card shows."""
    return [(f"models/{p.parent.name}/{p.name}", p) for p in sorted(BUNDLED.glob("*/*.png"))]


def _registry(name: str) -> Any:
    import diffsampler

    return getattr(diffsampler, name)


TABLES: dict[str, Callable[[], str]] = {
    "samplers": samplers_table,
    "spacings": lambda: plain_table(_registry("SPACINGS")),
    "schedules": lambda: plain_table(_registry("SCHEDULES")),
    "guidance": lambda: plain_table(_registry("GUIDANCE")),
    "metrics": metrics_table,
    "backbones": backbones_table,
    "cli": cli_reference,
}
MARKER = re.compile(r"<!-- (generated|card|include): ([\w./-]+) -->")


def expand(markdown: str) -> str:
    """A page with its markers replaced: ``generated: samplers``, ``card: digits``, ``include: CONTRIBUTING.md``."""

    def one(m: re.Match[str]) -> str:
        kind, arg = m.groups()
        if kind == "generated":
            return TABLES[arg]()
        if kind == "card":
            return card(arg)
        return re.sub(r"^# .*\n", "", (ROOT / arg).read_text(), count=1)  # its title: the page has its own

    return MARKER.sub(one, markdown)
