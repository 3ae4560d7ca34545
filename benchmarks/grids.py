"""Named spacings against the tuned grid: which grid serves each sampler best at 4–10 NFE.

    python benchmarks/grids.py [--samplers ddim,dpm-solver++,unipc] [--nfe 4,5,6,8,10]
                               [--targets ring,digits-uncond,digits-cond] [--spacings all] [--num-samples 500]
                               [--threads N] [--device cpu|cuda] [--table]

Targets as in ``leaderboard.py``. For each target, sampler and NFE: every named spacing, and the grid
``tune_grid`` finds for it (128 samples from seed 1 000 003, disjoint from the scored samples of seed 0;
cached in benchmarks/results/grids/<target>/tuned/). Results go to benchmarks/results/grids/<target>/
(resumable); ``--table`` prints the best named spacing beside the tuned grid, in SE units, and draws
results/grids/grids.png.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch
from leaderboard import HERE, cond_of, metric_of, paired, setting, show, use_device

import diffsampler as ds
from diffsampler.bench import bench, read_results
from diffsampler.metrics import METRICS
from diffsampler.tuning import load_grid, tune_grid

OUT = HERE / "results" / "grids"


def tuned_for(target: str, backbone: Any, schedule: Any, sampler: str, nfe: int) -> Any:
    """The tuned grid of (target, sampler, nfe), tuned once and kept as JSON."""
    path = OUT / target / "tuned" / f"{sampler}-{nfe}.json"
    if path.exists():
        return load_grid(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cond = cond_of(target)
    start = time.perf_counter()
    grid = tune_grid(
        backbone, sampler=sampler, nfe=nfe, schedule=schedule, model_name=target, cond=cond(0, 128) if cond else None
    )
    grid.extra["wall_s"] = round(time.perf_counter() - start, 1)
    grid.save(path)
    print(
        f"{target} {sampler} NFE {nfe}: tuned in {grid.extra['wall_s']}s, distance {grid.distance:.4g} "
        f"(default {grid.default_distance:.4g}{', kept' if grid.extra['kept_default'] else ''})",
        flush=True,
    )
    return grid


def run(
    targets: list[str],
    samplers: list[str],
    budgets: list[int],
    spacings: list[str],
    num_samples: int,
    device: str = "cpu",
) -> None:
    for target in targets:
        backbone, schedule, sched = setting(target, device)
        metric = metric_of(target, backbone, schedule)
        common = dict(
            metric=metric,
            out=OUT / target,
            num_samples=num_samples,
            seed=0,
            schedule=schedule,
            batch_size=250 if target != "ring" else num_samples,
            model_name=target,
            cond=cond_of(target),
            plots=False,
            on_cell=show(target),
            device=backbone.device,
        )
        for k in budgets:
            for sampler in samplers:
                grid = tuned_for(target, backbone, sched, sampler, k)
                bench(backbone, samplers=[sampler], grid=grid, **common)
                for spacing in spacings:
                    try:
                        bench(backbone, samplers=[sampler], nfe=[k], spacing=spacing, **common)
                    except ValueError as exc:  # a spacing that does not fit this schedule (ays for another σ_max)
                        print(f"{target} {sampler} NFE {k} {spacing}: {exc}", flush=True)


def table(targets: list[str], samplers: list[str], budgets: list[int], device: str = "cpu") -> str:
    """Markdown: the best named spacing beside the tuned grid; the difference in paired SEs (positive: tuned
    is better)."""
    lines = [
        "| target | sampler | NFE | best named spacing | value ± SE | tuned grid | value ± SE | "
        "difference ± paired SE | difference / SE |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for target in targets:
        backbone, schedule, sched = setting(target, device)
        metric = metric_of(target, backbone, schedule)
        rows = read_results(OUT / target)
        for sampler in samplers:
            for k in budgets:
                a, b = cells(rows, sched, sampler, k)
                if not a or not b:
                    continue
                grid = tuned_for(target, backbone, sched, sampler, k)
                diff, se = paired(OUT / target, target, b, a, backbone, schedule, metric, (grid, None))
                spacing = json.loads(a["options"])["spacing"]
                lines.append(
                    f"| {target} | {sampler} | {k} | {spacing} | {a['value']:.3g} ± {a['stderr']:.2g} | "
                    f"tuned | {b['value']:.3g} ± {b['stderr']:.2g} | {diff:+.3g} ± {se:.2g} | "
                    f"{diff / se if se else 0.0:+.1f} |"
                )
    return "\n".join(lines)


def cells(rows: list[dict[str, Any]], sched: Any, sampler: str, k: int) -> tuple[Any, Any]:
    """(the best named-spacing cell, the tuned cell) of sampler at budget k; None where not run."""
    n = ds.steps_for_nfe(sampler, sched, k)
    found = [r for r in rows if r["sampler"] == sampler and r["steps"] == n]
    named = [r for r in found if "spacing" in json.loads(r["options"])]
    tuned = [r for r in found if "grid" in json.loads(r["options"])]
    return min(named, key=lambda r: r["value"], default=None), (tuned or [None])[0]


def plot(targets: list[str], samplers: list[str], budgets: list[int]) -> Any:
    """results/grids/grids.png: per target, each sampler's tuned grid (solid) and best named spacing (dashed)
    against NFE, ± SE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3.8), dpi=120, squeeze=False)
    for ax, target in zip(axes[0], targets):
        _, _, sched = setting(target)
        rows = read_results(OUT / target)
        for i, sampler in enumerate(samplers):
            pairs = {k: cells(rows, sched, sampler, k) for k in budgets}
            for which, style, label in ((1, "-", "tuned"), (0, "--", "best named")):
                pts = [(k, p[which]) for k, p in pairs.items() if p[0] and p[1]]
                shift = 0.06 * (2 * i + which - len(samplers))  # side by side, so that the error bars show
                if pts:
                    ax.errorbar(
                        [k + shift for k, _ in pts],
                        [r["value"] for _, r in pts],
                        [r["stderr"] for _, r in pts],
                        color=f"C{i}",
                        ls=style,
                        marker="o",
                        ms=3,
                        capsize=2,
                        label=f"{sampler}, {label}",
                    )
        ax.set_xticks(budgets, [str(k) for k in budgets])
        ax.set_title(target)
        ax.set_xlabel("NFE")
        ax.set_ylabel(METRICS.meta(rows[0]["metric"])["label"] if rows else "")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path = OUT / "grids.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samplers", default="ddim,dpm-solver++,unipc")
    ap.add_argument("--nfe", default="4,5,6,8,10")
    ap.add_argument("--targets", default="ring,digits-uncond,digits-cond")
    ap.add_argument("--spacings", default="all")
    ap.add_argument("--num-samples", type=int, default=500)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the digits targets run")
    ap.add_argument("--table", action="store_true")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    use_device(a.device)
    targets, samplers = a.targets.split(","), a.samplers.split(",")
    budgets = [int(v) for v in a.nfe.split(",")]
    spacings = ds.SPACINGS.names() if a.spacings == "all" else a.spacings.split(",")
    if a.table:
        print(table(targets, samplers, budgets, a.device))
        plot(targets, samplers, budgets)
    else:
        run(targets, samplers, budgets, spacings, a.num_samples, a.device)


if __name__ == "__main__":
    ds.retain_freed_memory()
    main()
