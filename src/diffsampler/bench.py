"""Quality against cost: every sampler × step count, one cell at a time, resumable.

For each cell the harness draws ``num_samples`` samples (sample i from its own generator, so
cells share their x_T), scores them with a metric from the ``METRICS`` registry (value and
bootstrap standard error), and records NFE, wall time, time per sample and per NFE, device,
dtype, process count, whether the network was compiled, batch size, seed and library versions.
One untimed batch before the first cell keeps lazy initialisation and ``torch.compile``'s
compilation out of the timings. After every cell the row is added to ``results.json`` and
``results.csv`` (each replaced atomically, under a lock on the folder), so a run that is killed
keeps what it finished, and started again with the same settings it skips finished cells.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from .metrics import METRICS, Metric
from .options import parse_value
from .samplers import SAMPLERS
from .sampling import generators, sample, spacing_for, start_from, steps_for_nfe, time_grid

__all__ = ["bench", "parse_sampler_spec", "METRICS", "Metric", "FIELDS"]

FIELDS = [
    "model",
    "sampler",
    "options",
    "steps",
    "nfe",
    "metric",
    "value",
    "stderr",
    "extra",
    "num_samples",
    "batch_size",
    "seed",
    "wall_s",
    "s_per_sample",
    "s_per_nfe",
    "device",
    "dtype",
    "processes",
    "compiled",
    "versions",
]


def parse_sampler_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``name``, ``name:method`` (pf-ode) or ``name:key=value:key=value`` → (name, options)."""
    name, *parts = spec.split(":")
    SAMPLERS.get(name)
    options: dict[str, Any] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if sep:
            options[key] = parse_value(value)
        else:
            options["method"] = part
    return name, options


def gmm_ring(modes: int = 8, radius: float = 4.0, variance: float = 0.05) -> Any:
    """A 2-D ring of equal Gaussian modes: the classic exact target for sampler comparisons."""
    from .backbones import GaussianMixture

    angle = torch.arange(modes, dtype=torch.float64) * (2 * math.pi / modes)
    return GaussianMixture(means=torch.stack([radius * angle.cos(), radius * angle.sin()], 1), variances=variance)


ANALYTIC = {"gmm-ring": gmm_ring}


def load_bench_model(model: str, device: Any = "cpu", dtype: Any = None) -> tuple[Any, Any]:
    """(backbone, schedule): an analytic preset (with the linear schedule) or a pretrained model."""
    from .schedules import SCHEDULES

    if model in ANALYTIC:
        return ANALYTIC[model](), SCHEDULES.get("linear")()
    from .bundled import load_model

    bb = load_model(model, device=device, dtype=dtype)
    return bb, None


def _versions() -> str:
    import diffusers

    from . import __version__

    return f"diffsampler {__version__}; torch {torch.__version__}; diffusers {diffusers.__version__}"


def _atomic_write(path: Path, text: str) -> None:
    from .images import replace_atomically

    replace_atomically(path, lambda p: p.write_text(text))


def _key(row: dict[str, Any]) -> tuple:
    return (
        row["model"],
        row["sampler"],
        row["options"],
        int(row["steps"]),
        row["metric"],
        int(row["num_samples"]),
        int(row["seed"]),
        row["device"],
        row["dtype"],
        int(row["processes"]),
        bool(row.get("compiled", False)),
    )


def read_results(out: Path) -> list[dict[str, Any]]:
    """The rows of ``out/results.json`` (none when it does not exist); a damaged file is an error naming it."""
    path = out / "results.json"
    if not path.exists():
        return []
    try:
        rows = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}): restore it, or move it away to start afresh") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and set(FIELDS) <= set(r) for r in rows):
        raise ValueError(
            f"{path} is not a diffsampler results file (a list of rows with the fields "
            f"{', '.join(FIELDS)}): restore it, or move it away to start afresh"
        )
    return rows


@contextmanager
def locked(out: Path):
    """Hold ``out/.lock`` exclusively: two runs writing into one folder take turns and lose nothing (on any OS)."""
    from filelock import FileLock

    out.mkdir(parents=True, exist_ok=True)
    with FileLock(out / ".lock"):
        yield


def write_results(out: Path, rows: list[dict[str, Any]]) -> None:
    """results.json and results.csv, each replaced in one step."""
    _atomic_write(out / "results.json", json.dumps(rows, indent=2) + "\n")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS)
    w.writeheader()
    for r in rows:
        w.writerow({**r, "extra": json.dumps(r["extra"])})
    _atomic_write(out / "results.csv", buf.getvalue())


def log_ticks(lo: float, hi: float) -> list[float]:
    """Tick values for a log axis over [lo, hi]: 1, 2, 5 × 10^k, or every 1…9 × 10^k where those give fewer than 3."""
    decades = range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
    for mantissas in ((1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9)):
        ticks = [m * 10.0**k for k in decades for m in mantissas if lo * (1 - 1e-9) <= m * 10.0**k <= hi * (1 + 1e-9)]
        if len(ticks) >= 3:
            return ticks
    return ticks


def _plain_ticks(axis: Any, values: list[float]) -> None:
    """Ticks inside the data's range (so that every one is in view), written as plain numbers, on a log axis."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator, StrMethodFormatter

    ticks = log_ticks(min(values), max(values))
    if len(ticks) >= 2:
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_major_formatter(StrMethodFormatter("{x:g}"))
        axis.set_minor_locator(NullLocator())
        axis.set_minor_formatter(NullFormatter())


def cell_label(row: dict[str, Any]) -> str:
    """``ddim`` or ``ddim eta=0.5``: a cell's sampler and its options, as a reader writes them (the spacing
    only where it is not the sampler's default)."""
    options = json.loads(row["options"]) if isinstance(row["options"], str) else row["options"]
    if row["sampler"] in SAMPLERS and options.get("spacing") == SAMPLERS.meta(row["sampler"])["spacing"]:
        options = {k: v for k, v in options.items() if k != "spacing"}
    return " ".join([row["sampler"], *(f"{k}={v}" for k, v in options.items())])


def plot_results(out: Path, rows: list[dict[str, Any]]) -> list[Path]:
    """metric vs NFE and time per sample vs NFE, one curve per sampler (log NFE axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .images import replace_atomically

    paths = []
    for what, ylabel, fname in (
        ("value", None, "metric_vs_nfe.png"),
        ("s_per_sample", "seconds per sample", "time_vs_nfe.png"),
    ):
        fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
        for label in sorted({cell_label(r) for r in rows}):
            pts = sorted((r["nfe"], r[what], r["stderr"]) for r in rows if cell_label(r) == label)
            xs, ys, es = zip(*pts)
            if what == "value":
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=2, label=label)
            else:
                ax.plot(xs, ys, marker="o", label=label)
        ax.set_xscale("log")
        _plain_ticks(ax.xaxis, [r["nfe"] for r in rows])
        if what == "value" and all(r["value"] > 0 for r in rows):
            ax.set_yscale("log")
            _plain_ticks(ax.yaxis, [r["value"] for r in rows])
        ax.set_xlabel("NFE per sample")
        ax.set_ylabel(ylabel or _axis_label(rows[0]["metric"]))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        replace_atomically(out / fname, lambda p: fig.savefig(p, format="png"))
        plt.close(fig)
        paths.append(out / fname)
    return paths


def _axis_label(metric: str) -> str:
    try:
        return METRICS.meta(metric)["label"] or metric
    except (KeyError, ImportError):  # a plugin metric no longer installed: its rows still plot
        return metric


def distributed(device: torch.device) -> Any:
    """accelerate's process state when launched as several processes (torchrun / accelerate launch), else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState

    return PartialState(cpu=device.type == "cpu")


def end_distributed() -> None:
    """Destroy the process group if one is up: a gloo group left to interpreter exit can abort the process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _shard(n: int, rank: int, world: int) -> range:
    return range(rank * n // world, (rank + 1) * n // world)


def bench(
    backbone: Any,
    *,
    samplers: list[str],
    steps: list[int] | None = None,
    metric: Metric,
    out: str | Path,
    nfe: list[int] | None = None,
    num_samples: int = 500,
    batch_size: int = 100,
    seed: int = 0,
    shape: tuple[int, ...] | None = None,
    schedule: Any = None,
    model_name: str = "model",
    cond: Callable[[int, int], dict] | None = None,
    guidance: Any = None,
    spacing: str | None = None,
    grid: Any = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    on_cell: Callable[[dict[str, Any]], None] | None = None,
    plots: bool = True,
    solvers: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) the sampler × steps grid; returns all rows, finished earlier ones included.

    ``nfe`` instead of ``steps``: each sampler takes the most steps that cost at most that many network
    evaluations per sample (``steps_for_nfe``); a budget below one step's cost is skipped.
    ``grid`` (a ``TunedGrid``) instead: every sampler walks its times. ``solvers`` (name → ``LearnedSolver``)
    add one cell each, at the solver's own NFE, as sampler ``learned`` with the name in its options.

    Launched as several processes, each draws a contiguous share of the samples (sample i still
    from generator (seed, i), so the samples equal a single process's); the main process gathers
    them, scores the cell and writes the results, and the others return an empty list.
    """
    out = Path(out)
    specs = [(s, *parse_sampler_spec(s)) for s in samplers]
    solvers = dict(solvers or {})
    if grid is not None:
        steps, nfe = [grid.steps], None
    if (steps is None) == (nfe is None):
        raise ValueError("pass either steps or nfe")
    counts, budgets = (steps if steps is not None else nfe), nfe
    times = grid.times if grid is not None else None
    if not counts or any(int(n) < 1 for n in counts):
        raise ValueError(f"{'steps' if nfe is None else 'nfe'} must be integers ≥ 1, got {counts}")
    if num_samples < 2 or batch_size < 1:
        raise ValueError(f"need num_samples ≥ 2 and batch_size ≥ 1, got {num_samples} and {batch_size}")
    shape = tuple(shape or backbone.sample_shape)
    dev = torch.device(device)
    state = distributed(dev)
    rank, world = (state.process_index, state.num_processes) if state is not None else (0, 1)
    rows = started_with = read_results(out)
    if rows and rank == 0:  # a results.csv damaged or deleted since is written anew from results.json
        with locked(out):
            rows = read_results(out)
            write_results(out, rows)
    share = _shard(num_samples, rank, world)

    def record(row: dict[str, Any]) -> list[dict[str, Any]]:
        """Add a finished cell to what is on disk now (another run may have added cells meanwhile)."""
        with locked(out):
            current = read_results(out)
            if _key(row) not in {_key(r) for r in current}:
                current.append(row)
            write_results(out, current)
            if plots:
                plot_results(out, current)
        return current

    def run_batch(
        first: int, b: int, name: str, n: int, options: dict[str, Any], solver: Any = None
    ) -> tuple[Any, Tensor, dict]:
        """Samples first … first+b−1, each from its own generator (its x_T, then its noise)."""
        c = cond(first, b) if cond else {}
        gens = generators(seed, b, start=first)
        x_T = torch.stack([torch.randn(shape, generator=g) for g in gens])
        if sched_for_steps is not None:  # the model's x_T on a VE or flow schedule (sample refuses no schedule)
            if solver is not None:
                t0 = solver.times(sched_for_steps)[0]
            else:
                t0 = (times if times is not None else time_grid(name, sched_for_steps, n, spacing))[0]
            x_T = start_from(x_T, sched_for_steps, t0)
        x_T = x_T.to(dev, dtype)
        how = (
            {"solver": solver}
            if solver is not None
            else {"sampler": name, "steps": n, "spacing": spacing, "grid": times, **options}
        )
        return (
            sample(
                backbone, schedule=schedule, x_T=x_T, generator=gens, guidance=guidance, cond=c, full_output=True, **how
            ),
            x_T,
            c,
        )

    warm = False
    sched_for_steps = schedule if schedule is not None else getattr(backbone, "schedule", None)

    def step_counts(name: str, options: dict[str, Any]) -> list[int]:
        if budgets is None:
            return [int(n) for n in counts]
        found = (steps_for_nfe(name, sched_for_steps, int(k), spacing, **options) for k in budgets)
        return list(dict.fromkeys(n for n in found if n is not None))

    cells = [(name, options, n, None) for _, name, options in specs for n in step_counts(name, options)]
    cells += [
        ("learned", {"solver": label, "base": s.base, "init_spacing": s.init_spacing}, s.nfe, s)
        for label, s in solvers.items()
    ]
    for name, options, n, solver in cells:
        # the effective spacing, not only an asked one: a cell must not pass for another after a default changes
        if solver is not None:
            opts = dict(options)
        else:
            opts = {
                **options,
                **(
                    {"grid": "tuned " + ",".join(f"{t:.4g}" for t in grid.grid)}
                    if grid is not None
                    else {"spacing": spacing_for(name, sched_for_steps, spacing)}
                ),
            }
        row: dict[str, Any] = {
            "model": model_name,
            "sampler": name,
            "options": json.dumps(opts, sort_keys=True),
            "steps": int(n),
            "metric": metric.name,
            "num_samples": num_samples,
            "batch_size": batch_size,
            "seed": seed,
            "device": dev.type,
            "processes": world,
            "dtype": str(dtype).replace("torch.", ""),
            "compiled": bool(getattr(backbone, "compiled", False)),
        }
        # one process re-reads, to skip cells a concurrent run finished; sharded processes must all
        # skip the same cells, so they keep to what was on disk when they started
        if _key(row) in {_key(r) for r in (read_results(out) if world == 1 else started_with)}:
            continue
        if not warm and len(share):  # one untimed batch: lazy initialisation, and torch.compile's compilation
            run_batch(share.start, min(batch_size, len(share)), name, 1, options, solver)
            warm = True
        xs, x_Ts, labels, nfe = [], [], [], 0.0
        start = time.perf_counter()
        for first in range(share.start, share.stop, batch_size):
            b = min(batch_size, share.stop - first)
            r, x_T, c = run_batch(first, b, name, int(n), options, solver)
            nfe += r.nfe * b
            xs.append(r.samples.float().cpu())
            x_Ts.append(x_T.float().cpu())
            if "class_labels" in c:
                labels.append(torch.as_tensor(c["class_labels"]).cpu().expand(b))
        if dev.type == "cuda":
            torch.cuda.synchronize()
        parts = [(xs, x_Ts, labels, nfe)]
        if state is not None:
            from accelerate.utils import gather_object

            parts = gather_object(parts)
        wall = time.perf_counter() - start
        if rank != 0:
            continue
        x = torch.cat([t for p in parts for t in p[0]])
        x_T_all = torch.cat([t for p in parts for t in p[1]])
        label_parts = [t for p in parts for t in p[2]]
        value, stderr, extra = metric.score(x, torch.cat(label_parts) if label_parts else None, x_T_all)
        nfe = sum(p[3] for p in parts) / num_samples
        row.update(
            nfe=round(nfe, 3),
            value=value,
            stderr=stderr,
            extra=extra,
            wall_s=round(wall, 4),
            s_per_sample=wall / num_samples,
            s_per_nfe=wall / num_samples / max(nfe, 1e-12),
            versions=_versions(),
        )
        row = {k: row[k] for k in FIELDS}
        rows = record(row)
        if on_cell is not None:
            on_cell(row)
    return rows if rank == 0 else []
