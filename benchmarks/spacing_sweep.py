"""The default spacing of each sampler, measured: every sampler × spacing at NFE 5 and 10.

    python benchmarks/spacing_sweep.py [--nfe 5,10] [--targets ring,digits-uncond] [--num-samples 500]
                                       [--spacings trailing,leading,karras,logsnr,uniform] [--threads N] [--table]

Targets as in ``leaderboard.py`` (the exact ring, sliced Wasserstein; the bundled digits model
unconditional, fd-digits). Results go to benchmarks/results/spacing_sweep/<target>/ (resumable);
``--table`` prints, per sampler, the value of each spacing (summed over the budgets, in SE units of
the best) from what is there.
"""

from __future__ import annotations

import argparse
import json
import math

import torch
from leaderboard import HERE, OURS, setting, show

from diffsampler.bench import bench, parse_sampler_spec, read_results
from diffsampler.metrics import make_metric

OUT = HERE / "results" / "spacing_sweep"
SPACINGS = ["trailing", "leading", "karras", "logsnr", "uniform"]


def run(targets: list[str], budgets: list[int], num_samples: int, spacings: list[str]) -> None:
    for target in targets:
        backbone, schedule, _ = setting(target)
        metric = make_metric("exact" if target == "ring" else "fd-digits", backbone, schedule)
        for k in budgets:
            for spacing in spacings:
                bench(backbone, samplers=OURS, nfe=[k], metric=metric, out=OUT / target, num_samples=num_samples,
                      batch_size=250 if target != "ring" else num_samples, seed=0, schedule=schedule,
                      model_name=target, spacing=spacing, plots=False,
                      on_cell=show(target))


def table(targets: list[str]) -> str:
    """Markdown: per target and sampler, the spacing with the lowest mean value over the budgets, and all of them."""
    lines = ["| target | sampler | " + " | ".join(SPACINGS) + " | best |", "|---" * (len(SPACINGS) + 3) + "|"]
    for target in targets:
        rows = read_results(OUT / target)
        for spec in OURS:
            name, options = parse_sampler_spec(spec)
            means = {}
            for sp in SPACINGS:
                cells = [r for r in rows if r["sampler"] == name and json.loads(r["options"]) == {**options,
                                                                                              "spacing": sp}]
                if cells:
                    means[sp] = (sum(r["value"] for r in cells) / len(cells),
                                 math.sqrt(sum(r["stderr"] ** 2 for r in cells)) / len(cells), len(cells))
            if not means:
                continue
            best = min(means, key=lambda sp: means[sp][0])
            cols = [f"{means[sp][0]:.3g} ± {means[sp][1]:.2g}" if sp in means else "—" for sp in SPACINGS]
            lines.append(f"| {target} | {spec} | " + " | ".join(cols) + f" | {best} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nfe", default="5,10")
    ap.add_argument("--targets", default="ring,digits-uncond")
    ap.add_argument("--num-samples", type=int, default=500)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--spacings", default=",".join(SPACINGS))
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    targets = args.targets.split(",")
    if args.table:
        print(table(targets))
    else:
        run(targets, [int(v) for v in args.nfe.split(",")], args.num_samples, args.spacings.split(","))


if __name__ == "__main__":
    main()
