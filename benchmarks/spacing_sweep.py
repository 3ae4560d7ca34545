"""The default spacing of each sampler, measured: every sampler × spacing at NFE 5 and 10.

    python benchmarks/spacing_sweep.py [--nfe 5,10] [--targets ring,digits-uncond] [--num-samples 500]
                                       [--spacings trailing,leading,karras,logsnr,uniform] [--samplers a,b]
                                       [--threads N] [--device cpu|cuda] [--table]

Targets as in ``leaderboard.py`` (the exact ring, sliced Wasserstein; the bundled digits model
unconditional, fd-digits); the samplers are the leaderboard's and ``pf-ode:heun``. Results go to
benchmarks/results/spacing_sweep/<target>/ (resumable); ``--table`` prints, per budget, each sampler's value on
every spacing from what is there.
"""

from __future__ import annotations

import argparse

import torch
from leaderboard import HERE, OURS, cells_of, metric_of, setting, show, use_device

from diffsampler import retain_freed_memory
from diffsampler.bench import bench, parse_sampler_spec, read_results
from diffsampler.sampling import steps_for_nfe

OUT = HERE / "results" / "spacing_sweep"
SPACINGS = ["trailing", "leading", "karras", "logsnr", "uniform"]
SAMPLERS = [*OURS, "pf-ode:heun"]


def run(
    targets: list[str],
    budgets: list[int],
    num_samples: int,
    spacings: list[str],
    samplers: list[str],
    device: str = "cpu",
) -> None:
    for target in targets:
        backbone, schedule, _ = setting(target, device)
        metric = metric_of(target, backbone, schedule)
        for k in budgets:
            for spacing in spacings:
                bench(
                    backbone,
                    samplers=samplers,
                    nfe=[k],
                    metric=metric,
                    out=OUT / target,
                    num_samples=num_samples,
                    batch_size=250 if target != "ring" else num_samples,
                    seed=0,
                    schedule=schedule,
                    model_name=target,
                    spacing=spacing,
                    plots=False,
                    on_cell=show(target),
                    device=backbone.device,
                )


def table(targets: list[str], budgets: list[int]) -> str:
    """Markdown: per target and NFE budget, each sampler's value ± SE on every spacing, and the best of them."""
    lines = []
    for target in targets:
        rows, (_, _, schedule) = read_results(OUT / target), setting(target)
        for k in budgets:
            lines += [
                "",
                f"{target}, NFE {k}:",
                "",
                "| sampler | " + " | ".join(SPACINGS) + " | best |",
                "|---" * (len(SPACINGS) + 2) + "|",
            ]
            for spec in SAMPLERS:
                name, options = parse_sampler_spec(spec)
                cells = {}
                for sp in SPACINGS:
                    found = cells_of(
                        rows, name, {**options, "spacing": sp}, steps_for_nfe(name, schedule, k, sp, **options)
                    )
                    if found:
                        cells[sp] = found[0]
                if not cells:
                    continue
                best = min(cells, key=lambda sp: cells[sp]["value"])
                cols = [
                    f"{cells[sp]['value']:.3g} ± {cells[sp]['stderr']:.2g}" if sp in cells else "—" for sp in SPACINGS
                ]
                lines.append(f"| {spec} | " + " | ".join(cols) + f" | {best} |")
    return "\n".join(lines).strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nfe", default="5,10")
    ap.add_argument("--targets", default="ring,digits-uncond")
    ap.add_argument("--num-samples", type=int, default=500)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--spacings", default=",".join(SPACINGS))
    ap.add_argument("--samplers", default=",".join(SAMPLERS))
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the digits target runs")
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    use_device(args.device)
    targets = args.targets.split(",")
    if args.table:
        print(table(targets, [int(v) for v in args.nfe.split(",")]))
    else:
        run(
            targets,
            [int(v) for v in args.nfe.split(",")],
            args.num_samples,
            args.spacings.split(","),
            args.samplers.split(","),
            args.device,
        )


if __name__ == "__main__":
    retain_freed_memory()
    main()
