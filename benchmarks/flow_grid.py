"""diffusers' ``flow`` grid against ``shifted-uniform`` on rectified flow, on the exact ring.

    python benchmarks/flow_grid.py [--steps 5,10,20] [--shift 3] [--num-samples 2000] [--table]

The 8-mode ring as a rectified-flow model (SD3's shift 3), every sampler below on both grids, scored by the
sliced Wasserstein distance to exact draws and the mean true log-density of the samples (the exact draws'
own is the ceiling). Results go to benchmarks/results/flow_grid/ (resumable); ``--table`` prints them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from leaderboard import cells_of

import diffsampler as ds
from diffsampler.bench import ANALYTIC, bench, read_results
from diffsampler.metrics import make_metric

OUT = Path(__file__).parent / "results" / "flow_grid"
SAMPLERS = ["ddim", "dpm-solver++", "dpm-solver++:order=3", "unipc", "unipc:order=3", "deis"]
SPACINGS = ["flow", "shifted-uniform"]


def run(steps: list[int], shift: float, num_samples: int) -> None:
    backbone, schedule = ANALYTIC["gmm-ring"](), ds.RectifiedFlow(shift=shift)
    metric = make_metric("exact", backbone, schedule)
    for spacing in SPACINGS:
        bench(
            backbone,
            samplers=SAMPLERS,
            steps=steps,
            metric=metric,
            out=OUT,
            num_samples=num_samples,
            batch_size=num_samples,
            seed=0,
            schedule=schedule,
            model_name=f"gmm-ring, rectified flow shift {shift:g}",
            spacing=spacing,
            plots=False,
        )


def table() -> str:
    """Markdown: per sampler and steps, each spacing's distance ± SE and mean log-density."""
    rows = read_results(OUT)
    lines = [
        "| sampler | steps | " + " | ".join(f"{sp}: distance, log-density" for sp in SPACINGS) + " |",
        "|---|---|" + "---|" * len(SPACINGS),
    ]
    ceiling = rows[0]["extra"]["true_mean_log_density"] if rows else float("nan")
    keys = dict.fromkeys(
        (r["sampler"], json.dumps({k: v for k, v in json.loads(r["options"]).items() if k != "spacing"}), r["steps"])
        for r in rows
    )
    for name, options, n in keys:
        cols = []
        for sp in SPACINGS:
            r = next(iter(cells_of(rows, name, {**json.loads(options), "spacing": sp}, n)), None)
            cols.append(f"{r['value']:.3f} ± {r['stderr']:.3f}, {r['extra']['mean_log_density']:.3f}" if r else "—")
        extra = " ".join(f"{k}={v}" for k, v in json.loads(options).items())
        lines.append(f"| {name}{' ' + extra if extra else ''} | {n} | " + " | ".join(cols) + " |")
    return "\n".join(lines) + f"\n\nExact draws' mean log-density: {ceiling:.3f}."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", default="5,10,20")
    ap.add_argument("--shift", type=float, default=3.0)
    ap.add_argument("--num-samples", type=int, default=2000)
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args()
    if args.table:
        print(table())
    else:
        run([int(v) for v in args.steps.split(",")], args.shift, args.num_samples)
        print(table())


if __name__ == "__main__":
    ds.retain_freed_memory()
    main()
