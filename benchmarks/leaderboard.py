"""Leaderboard: every sampler × NFE budget, with diffusers' schedulers on the same model, x_T and metric.

    python benchmarks/leaderboard.py [--nfe 3,5,8,10,15,20,50] [--targets ring,digits-uncond,digits-cond]
                                     [--num-samples 500] [--threads N] [--device cpu|cuda]

Targets: ``ring`` (the exact 8-mode ring, sliced Wasserstein distance to exact draws), ``digits-uncond``
and ``digits-cond`` (the bundled digits model, unconditional, and conditional at w = 1 with the classes
in turn; fd-digits). Each sampler takes the most steps within each NFE budget (``steps_for_nfe``), at its
default spacing. diffusers' schedulers run as samplers through ``DIFFUSERS``: built with ``from_config``
from the model's own scheduler config, as a diffusers user swaps schedulers, with trailing timesteps
(Lin et al. 2024; the config's leading spacing is also run for DDIM and DPM-Solver++), and their own
clipping rules. Results go to benchmarks/results/leaderboard/<target>/ (resumable: finished cells are
kept); ``--table`` prints the docs/benchmarks.md table of the best solver per NFE from what is there, the difference
with its paired bootstrap SE (both cells' samples drawn again from their shared x_T; kept in paired.json),
and draws one plot per target (<target>/leaderboard.png). ``--device cuda`` runs the digits targets on a GPU
in float32 with TF32 off (the ring stays on the CPU); every cell of a column runs on the same device, from
the same x_T and noise (drawn on the CPU), and records it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import torch

import diffsampler as ds
from diffsampler.bench import bench, cell_label, load_bench_model, parse_sampler_spec, read_results
from diffsampler.bundled import model_path
from diffsampler.metrics import METRICS, Metric, make_metric, paired_difference
from diffsampler.samplers.base import times_like

HERE = Path(__file__).parent
OUT = HERE / "results" / "leaderboard"
OURS = [
    "ddim",
    "ddpm",
    "euler-maruyama",
    "dpm-solver++",
    "dpm-solver++:order=3",
    "euler",
    "euler-ancestral",
    "heun",
    "lms",
    "dpm-solver++-2s",
    "dpm-solver++-sde",
    "dpm-solver++-singlestep",
    "unipc",
    "unipc:variant=bh1",
    "unipc:order=3",
    "deis",
    "deis:order=3",
    "ipndm",
    "pndm",
    "plms",
    "restart",
]
# name → (diffusers class, config overrides): each variant raced on our side that diffusers has (its UniPC bh1
# returns NaN on the step into σ = 0, so it is not here)
DIFFUSERS = {
    "diffusers-ddim": ("DDIMScheduler", {"timestep_spacing": "trailing"}),
    "diffusers-ddim-leading": ("DDIMScheduler", {}),
    "diffusers-dpm++2m": ("DPMSolverMultistepScheduler", {"timestep_spacing": "trailing"}),
    "diffusers-dpm++2m-leading": ("DPMSolverMultistepScheduler", {}),
    "diffusers-dpm++2m-karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "diffusers-dpm++3m": ("DPMSolverMultistepScheduler", {"timestep_spacing": "trailing", "solver_order": 3}),
    "diffusers-dpm++2s": ("DPMSolverSinglestepScheduler", {"timestep_spacing": "trailing"}),
    "diffusers-unipc": ("UniPCMultistepScheduler", {"timestep_spacing": "trailing"}),
    "diffusers-unipc3": ("UniPCMultistepScheduler", {"timestep_spacing": "trailing", "solver_order": 3}),
    "diffusers-deis": ("DEISMultistepScheduler", {"timestep_spacing": "trailing"}),
    "diffusers-deis3": ("DEISMultistepScheduler", {"timestep_spacing": "trailing", "solver_order": 3}),
    "diffusers-plms": ("PNDMScheduler", {"timestep_spacing": "trailing", "skip_prk_steps": True}),
    "diffusers-euler": ("EulerDiscreteScheduler", {"timestep_spacing": "trailing"}),
    "diffusers-heun": ("HeunDiscreteScheduler", {"timestep_spacing": "trailing"}),
    "diffusers-lms": ("LMSDiscreteScheduler", {"timestep_spacing": "trailing"}),
}


def diffusers_sampler(cls_name: str, overrides: dict[str, Any], config: dict[str, Any]) -> Any:
    """A sampler that runs diffusers' ``cls_name`` (from ``config`` + ``overrides``) for len(grid) − 1 steps."""
    import diffusers

    def run(
        eps_fn: Any, x: torch.Tensor, grid: torch.Tensor, schedule: Any, *, noise_sampler: Any, callback: Any = None
    ) -> torch.Tensor:
        sched = getattr(diffusers, cls_name).from_config(config, **overrides)
        sched.set_timesteps(len(grid) - 1)
        raw = getattr(eps_fn, "eps", eps_fn)  # the scheduler applies its own config's clipping, as in diffusers
        sample = x * sched.init_noise_sigma
        for t in sched.timesteps:
            x_in = sched.scale_model_input(sample, t)
            eps = raw(x_in, times_like(schedule.index_to_t(torch.as_tensor(t, dtype=torch.float64)), x))
            sample = sched.step(eps, t, sample).prev_sample
        return sample

    run.__name__ = cls_name
    return run


def diffusers_spacing(overrides: dict[str, Any], config: dict[str, Any]) -> str:
    """The spacing a diffusers scheduler walks, as its bench rows record it."""
    if overrides.get("use_karras_sigmas"):
        return "karras"
    return overrides.get("timestep_spacing", config.get("timestep_spacing", "leading"))


def register_diffusers(config: dict[str, Any]) -> None:
    for name, (cls_name, overrides) in DIFFUSERS.items():
        ds.SAMPLERS.register(
            name,
            diffusers_sampler(cls_name, overrides, config),
            replace=True,
            spacing=diffusers_spacing(overrides, config),
        )


def setting(target: str, device: str = "cpu") -> tuple[Any, Any, Any]:
    """(backbone, schedule or None, its schedule) of a target, with diffusers' samplers registered for it;
    the digits model on ``device``, the analytic ring on the CPU."""
    model = "gmm-ring" if target == "ring" else "digits"
    backbone, schedule = load_bench_model(model, device="cpu" if model == "gmm-ring" else device)
    if model == "digits":
        config = json.loads((model_path("digits") / "scheduler" / "scheduler_config.json").read_text())
    else:  # the linear schedule the ring is sampled with, unclipped
        config = {
            "num_train_timesteps": 1000,
            "beta_schedule": "linear",
            "beta_start": 1e-4,
            "beta_end": 0.02,
            "clip_sample": False,
        }
    register_diffusers(config)
    return backbone, schedule, schedule or backbone.schedule


def use_device(device: str) -> None:
    """On a GPU, float32 as on the CPU: TF32 would round convolutions and matmuls to 10-bit mantissas."""
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def metric_of(target: str, backbone: Any, schedule: Any) -> Metric:
    """The target's metric: sliced Wasserstein to exact draws on the ring, fd-digits on the digits."""
    return make_metric("exact" if target == "ring" else "fd-digits", backbone, schedule)


def cond_of(target: str) -> Any:
    """bench's ``cond``: the classes in turn on digits-cond, none elsewhere."""
    return (lambda first, b: {"class_labels": torch.arange(first, first + b) % 10}) if target == "digits-cond" else None


def show(target: str) -> Any:
    """A bench ``on_cell`` that prints the finished cell on one line."""
    return lambda r: print(
        f"{target} {r['sampler']} {r['options']} NFE {r['nfe']:g}: {r['value']:.4g} ± {r['stderr']:.2g}", flush=True
    )


def run(targets: list[str], budgets: list[int], num_samples: int, device: str = "cpu") -> None:
    for target in targets:
        backbone, schedule, _ = setting(target, device)
        metric = metric_of(target, backbone, schedule)
        for k in budgets:  # budget by budget, so that an interrupted run leaves whole columns
            bench(
                backbone,
                samplers=OURS + list(DIFFUSERS),
                nfe=[k],
                metric=metric,
                out=OUT / target,
                num_samples=num_samples,
                batch_size=250 if target != "ring" else num_samples,
                seed=0,
                schedule=schedule,
                model_name=target,
                cond=cond_of(target),
                plots=False,
                on_cell=show(target),
                device=backbone.device,
            )


def redraw(
    target: str, row: dict[str, Any], backbone: Any, schedule: Any, metric: Metric, grid: Any = None
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """A finished cell's (samples, labels, x_T), drawn again as bench drew them; warns if its value moved."""
    options = json.loads(row["options"])
    spacing = options.pop("spacing", None)
    options.pop("grid", None)
    spec = ":".join([row["sampler"], *(f"{k}={v}" for k, v in sorted(options.items()))])
    kept: dict[str, Any] = {}

    def keep(x: torch.Tensor, labels: torch.Tensor | None, x_T: torch.Tensor) -> tuple[float, float, dict]:
        kept.update(x=x, labels=labels, x_T=x_T)
        return metric.score(x, labels, x_T)

    with tempfile.TemporaryDirectory() as tmp:
        [again] = bench(
            backbone,
            samplers=[spec],
            steps=None if grid is not None else [row["steps"]],
            grid=grid,
            spacing=spacing,
            metric=Metric(metric.name, keep),
            out=tmp,
            num_samples=row["num_samples"],
            batch_size=row["batch_size"],
            seed=row["seed"],
            schedule=schedule,
            model_name=target,
            cond=cond_of(target),
            plots=False,
            device=backbone.device,
        )
    if abs(again["value"] - row["value"]) > 0.1 * row["stderr"]:
        print(
            f"{target} {cell_label(row)}: drawn again it scores {again['value']:.4g}, recorded {row['value']:.4g}",
            flush=True,
        )
    return kept["x"], kept["labels"], kept["x_T"]


def paired(
    out: Path,
    target: str,
    a: dict[str, Any],
    b: dict[str, Any],
    backbone: Any,
    schedule: Any,
    metric: Metric,
    grids: tuple[Any, Any] = (None, None),
) -> tuple[float, float]:
    """value(b) − value(a) and its paired bootstrap SE (200 rounds), computed once and kept in paired.json."""
    path = out / "paired.json"
    cache = json.loads(path.read_text()) if path.exists() else {}
    key = json.dumps([[r["sampler"], r["options"], r["steps"], r["num_samples"], r["seed"]] for r in (a, b)])
    if key not in cache:
        (xa, labels, x_T), (xb, _, _) = (
            redraw(target, r, backbone, schedule, metric, g) for r, g in zip((a, b), grids)
        )
        diff, se = paired_difference(metric, xa, xb, labels, x_T)
        cache[key] = {"difference": diff, "paired_se": se, "rounds": 200}
        path.write_text(json.dumps(cache, indent=1) + "\n")
    return cache[key]["difference"], cache[key]["paired_se"]


def cells_of(rows: list[dict[str, Any]], name: str, options: dict[str, Any], steps: int) -> list[dict[str, Any]]:
    """The result rows of sampler ``name`` with exactly these options (spacing included) at ``steps`` steps."""
    return [r for r in rows if r["sampler"] == name and r["steps"] == steps and json.loads(r["options"]) == options]


def cells_at(rows: list[dict[str, Any]], sched: Any, k: int) -> list[dict[str, Any]]:
    """The cells of every raced sampler at budget k (the most steps within k, at its default spacing);
    empty unless the column is complete, so that a budget run in part (or met only by step counts
    shared with other budgets) is not judged on the few cells it has."""
    cell = []
    for spec in OURS + list(DIFFUSERS):
        name, options = parse_sampler_spec(spec)
        n = ds.steps_for_nfe(name, sched, k, **options)
        if n is None:
            continue
        found = cells_of(rows, name, {**options, "spacing": ds.spacing_for(name, sched)}, n)
        if not found:
            return []
        cell += found
    return cell


def best_of(cell: list[dict[str, Any]]) -> dict[str, dict[str, Any] | None]:
    """The best (lowest) cell of each side, ``ours`` and ``diffusers``."""
    return {
        side: min(
            (r for r in cell if r["sampler"].startswith("diffusers") == (side == "diffusers")),
            key=lambda r: r["value"],
            default=None,
        )
        for side in ("ours", "diffusers")
    }


def table(targets: list[str], budgets: list[int], device: str = "cpu") -> str:
    """Markdown: per target and budget, the best diffsampler solver, the best diffusers scheduler, and the
    difference in paired SEs (positive: diffsampler's is better)."""
    lines = [
        "| target | NFE | best diffsampler solver | value ± SE | best diffusers scheduler | value ± SE | "
        "difference ± paired SE | difference / SE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for target in targets:
        backbone, schedule, sched = setting(target, device)
        metric = metric_of(target, backbone, schedule)
        rows = read_results(OUT / target)
        for k in budgets:
            a, b = best_of(cells_at(rows, sched, k)).values()
            if not a or not b:
                continue
            diff, se = paired(OUT / target, target, a, b, backbone, schedule, metric)
            a_, b_ = (f"{cell_label(r)} ({r['steps']} steps, {json.loads(r['options'])['spacing']})" for r in (a, b))
            z = diff / se if se else 0.0  # bitwise-equal samples on both sides
            lines.append(
                f"| {target} | {k} | {a_} | {a['value']:.3g} ± {a['stderr']:.2g} "
                f"| {b_} | {b['value']:.3g} ± {b['stderr']:.2g} | {diff:+.3g} ± {se:.2g} | {z:+.1f} |"
            )
    return "\n".join(lines)


def plot(target: str, budgets: list[int]) -> Path | None:
    """<target>/leaderboard.png: every sampler's metric against its NFE budget (thin), and each side's
    best per budget (bold, ± SE); None if no budget has cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, _, sched = setting(target)
    rows = read_results(OUT / target)
    cells = {k: cells_at(rows, sched, k) for k in budgets}
    cells = {k: c for k, c in cells.items() if c}
    if not cells:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=120)
    colours = {"ours": "tab:blue", "diffusers": "tab:orange"}
    for label in sorted({cell_label(r) for c in cells.values() for r in c}):
        pts = sorted((k, r["value"]) for k, c in cells.items() for r in c if cell_label(r) == label)
        side = "diffusers" if label.startswith("diffusers") else "ours"
        ax.plot(*zip(*pts), color=colours[side], alpha=0.2, lw=0.8)
    for side, name in (("ours", "best diffsampler solver"), ("diffusers", "best diffusers scheduler")):
        pts = [(k, best_of(c)[side]) for k, c in sorted(cells.items()) if best_of(c)[side]]
        ax.errorbar(
            [k for k, _ in pts],
            [r["value"] for _, r in pts],
            yerr=[r["stderr"] for _, r in pts],
            color=colours[side],
            marker="o",
            lw=2,
            capsize=3,
            label=name,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sorted(cells), [str(k) for k in sorted(cells)])
    ax.minorticks_off()
    ax.set_xlabel("NFE budget per sample")
    ax.set_ylabel(METRICS.meta(rows[0]["metric"])["label"])
    ax.set_title(f"{target}: every sampler (thin) and the best of each side")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = OUT / target / "leaderboard.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nfe", default="3,5,8,10,15,20,50")
    ap.add_argument("--targets", default="ring,digits-uncond,digits-cond")
    ap.add_argument("--num-samples", type=int, default=500)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument(
        "--device",
        default="cpu",
        choices=["cpu", "cuda"],
        help="where the digits targets run (new cells, and cells drawn again for --table)",
    )
    ap.add_argument("--table", action="store_true", help="print the best-per-NFE table from the results")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    use_device(args.device)
    targets, budgets = args.targets.split(","), [int(v) for v in args.nfe.split(",")]
    if args.table:
        print(table(targets, budgets, args.device))
        for target in targets:
            plot(target, budgets)
    else:
        run(targets, budgets, args.num_samples, args.device)


if __name__ == "__main__":
    ds.retain_freed_memory()
    main()
