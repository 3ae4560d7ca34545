"""Learned solvers against every raced solver and spacing at 4–6 NFE: the digits model and an exact mixture.

    python benchmarks/learned_solver.py [--targets digits-uncond,digits-cond] [--nfe 4,5,6]
                                        [--bases dpm-solver++,unipc,dpm-solver++-sde] [--ode-samples 100]
    python benchmarks/learned_solver.py --mixture
    python benchmarks/learned_solver.py --table [--bases dpm-solver++,unipc,dpm-solver++-sde]

Digits: for each target, NFE k and base, a solver is learned with ``ds.learn_solver``'s defaults (pairs from seed
2000003; the file, with its wall time, goes to results/learned/solvers/<target>-nfe<k>[-<base>].json, the base
named where it is not the default, and is reused),
then scored on 500 samples from seed 0 in fd-digits (results/learned/<target>/). Its rivals are every cell at
NFE k, from the same seed-0 x_T, of the grids sweep (DDIM, DPM-Solver++ and UniPC on ten named spacings and on
their tuned grids: results/grids/) and of the leaderboard (every sampler at its default spacing and diffusers'
schedulers run by diffusers' own step loop: results/leaderboard/, at NFE 4, 5, 6 and 8); at
NFE 4 also every cell at NFE 8. The best on a named spacing, the best on a tuned grid (and the best at NFE 8)
are drawn again beside the learned solver, and each difference is tested against its paired bootstrap SE
(kept in results/learned/<target>/paired.json). ``ode-error``, on the unconditional target (the metric's
reference is the unconditional ODE): the mean distance to a tight rk45 solution of the model's PF-ODE from the
first ``--ode-samples`` seed-0 x_T, for the learned solver and the deterministic solvers (DPM-Solver++ 2M and
3M, UniPC 2 and 3, DEIS, iPNDM, DDIM) on their default spacing, on the best named-spacing cell's spacing and
on the spacing the learned solver started from. ``--mixture``: the exact 2-D three-component mixture of the
tests, a learned NFE-4 solver against every sampler × spacing at NFE 4 (component means and variances from
20000 samples).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from typing import Any

import torch
from leaderboard import HERE, cond_of, metric_of, redraw, setting

import diffsampler as ds
from diffsampler.bench import bench, cell_label, read_results
from diffsampler.learned import STOCHASTIC, pair_defaults
from diffsampler.metrics import Metric, make_metric, paired_difference

OUT = HERE / "results" / "learned"
SOLVERS = OUT / "solvers"
DEFAULT_BASE = "dpm-solver++"
ODE_RIVALS = ["dpm-solver++", "dpm-solver++:order=3", "unipc", "unipc:order=3", "deis", "ipndm", "ddim"]


def named(base: str, sep: str) -> str:
    """``sep + base``, or nothing for the default base (whose files and labels predate the others)."""
    return "" if base == DEFAULT_BASE else sep + base


def name_of(target: str, k: int, base: str) -> str:
    """The solver's file stem and bench label: <target>-nfe<k>, with -<base> where the base is not the default."""
    return f"{target}-nfe{k}" + named(base, "-")


def digit_features() -> Any:
    """The bundled clean classifier's features (fd-digits' own), which a stochastic base fits its distribution in."""
    from diffsampler.bundled import model_path
    from diffsampler.classifier import DigitClassifier

    return DigitClassifier.from_pretrained(model_path("digits-classifier") / "clean").features


def learned(target: str, k: int, backbone: Any, base: str = DEFAULT_BASE) -> ds.LearnedSolver:
    """The target's learned k-step solver: read from its file, or learned with the defaults and written there."""
    path = SOLVERS / f"{name_of(target, k, base)}.json"
    if path.exists():
        return ds.load_solver(path)
    SOLVERS.mkdir(parents=True, exist_ok=True)
    pairs = pair_defaults(base)[0]
    cond = {"class_labels": torch.arange(pairs) % 10} if target == "digits-cond" else {}
    solver = ds.learn_solver(
        backbone,
        nfe=k,
        base=base,
        cond=cond,
        model_name="digits",
        features=digit_features() if base in STOCHASTIC else None,
        checkpoint=path.with_suffix(".ckpt"),
        progress=lambda e: print(f"{target} NFE {k} epoch {e['epoch']}: held-out {e['heldout_error']:.4g}", flush=True),
    )
    solver.extra["command"] = f"python benchmarks/learned_solver.py --targets {target} --nfe {k} --bases {base}"
    solver.save(path)
    path.with_suffix(".ckpt").unlink(missing_ok=True)
    return solver


def draw(target: str, solver: ds.LearnedSolver, backbone: Any, metric: Metric, num: int = 500) -> tuple:
    """(row, samples, labels, x_T) of the learned solver's cell, recorded in results/learned/<target>/."""
    kept: dict[str, Any] = {}

    def keep(x: torch.Tensor, labels: torch.Tensor | None, x_T: torch.Tensor) -> tuple[float, float, dict]:
        kept.update(x=x, labels=labels, x_T=x_T)
        return metric.score(x, labels, x_T)

    label = name_of(target, solver.nfe, solver.base)
    common = dict(
        steps=[solver.nfe],
        num_samples=num,
        batch_size=250,
        seed=0,
        model_name=target,
        cond=cond_of(target),
        plots=False,
        solvers={label: solver},
        samplers=[],
    )
    rows = bench(backbone, metric=metric, out=OUT / target, **common)
    with tempfile.TemporaryDirectory() as tmp:
        bench(backbone, metric=Metric(metric.name, keep), out=tmp, **common)
    row = next(r for r in rows if r["sampler"] == "learned" and json.loads(r["options"])["solver"] == label)
    return row, kept["x"], kept["labels"], kept["x_T"]


def rivals(target: str, k: int, tuned: bool | None = None) -> list[dict[str, Any]]:
    """Every seed-0, 500-sample fd-digits cell at NFE k of the grids sweep and the leaderboard; with ``tuned``
    only those on a tuned grid (True) or on a named spacing (False)."""
    rows = read_results(HERE / "results" / "grids" / target) + read_results(HERE / "results" / "leaderboard" / target)
    return [
        r
        for r in rows
        if abs(r["nfe"] - k) < 1e-9
        and r["seed"] == 0
        and r["num_samples"] == 500
        and r["metric"] == "fd-digits"
        and (tuned is None or ("grid" in json.loads(r["options"])) == tuned)
    ]


KINDS = {False: "named spacings", True: "tuned grids", None: "every cell at NFE 8"}


def matchups(k: int) -> list[tuple[int, bool | None]]:
    """(budget, tuned) of the rivals a k-step solver meets: named spacings and tuned grids at k; at 4 also NFE 8."""
    return [(k, False), (k, True)] + ([(8, None)] if k == 4 else [])


def tuned_grid_of(target: str, row: dict[str, Any], backbone: Any, schedule: Any) -> Any:
    """The TunedGrid a grids-sweep cell walked (None for a named spacing)."""
    if "grid" not in json.loads(row["options"]):
        return None
    from grids import tuned_for

    return tuned_for(target, backbone, schedule, row["sampler"], int(row["nfe"]))


def compare(
    target: str,
    row: dict[str, Any],
    x: torch.Tensor,
    labels: Any,
    x_T: torch.Tensor,
    rival: dict,
    backbone: Any,
    schedule: Any,
    metric: Metric,
) -> tuple[float, float]:
    """rival − learned in the metric (positive: the learned solver is better) and its paired SE; cached."""
    path = OUT / target / "paired.json"
    cache = json.loads(path.read_text()) if path.exists() else {}
    key = json.dumps([[r["sampler"], r["options"], r["steps"], r["value"]] for r in (row, rival)])
    if key not in cache:
        xr, _, xr_T = redraw(
            target, rival, backbone, schedule, metric, tuned_grid_of(target, rival, backbone, schedule)
        )
        assert torch.equal(xr_T, x_T), "the rival's x_T differ from the learned solver's"
        diff, se = paired_difference(metric, x, xr, labels, x_T)
        cache[key] = {"difference": diff, "paired_se": se, "rounds": 200}
        path.write_text(json.dumps(cache, indent=1) + "\n")
    return cache[key]["difference"], cache[key]["paired_se"]


def ode_errors(target: str, k: int, solver: ds.LearnedSolver, backbone: Any, spacing: str, num: int) -> dict:
    """ode-error of the learned solver and the deterministic rivals on ``num`` seed-0 samples; cached."""
    path = OUT / target / f"ode-error-nfe{k}.json"
    cached = json.loads(path.read_text()) if path.exists() else {}
    metric = make_metric("ode-error", backbone, None)
    gens = ds.generators(0, num)
    x_T = torch.stack([torch.randn(backbone.sample_shape, generator=g) for g in gens])
    cond = cond_of(target)
    c = cond(0, num) if cond else {}
    spacings = dict.fromkeys(["trailing", spacing, solver.init_spacing])  # the default, the best, its start
    plain = {f"{spec} {sp}": (spec, sp) for spec in ODE_RIVALS for sp in spacings}
    ours = "learned" + named(solver.base, " ")
    for label in [ours, *plain]:
        if label in cached:
            continue
        if label == ours:
            x = ds.sample(backbone, solver=solver, x_T=x_T, cond=c)
        else:
            spec, sp = plain[label]
            name, *opts = spec.split(":")
            options = {o.split("=")[0]: int(o.split("=")[1]) for o in opts}
            steps = ds.steps_for_nfe(name, backbone.schedule, k, sp, **options)
            x = ds.sample(backbone, sampler=name, steps=steps, spacing=sp, x_T=x_T, cond=c, **options)
        value, se, _ = metric.score(x.float(), None, x_T)
        cached[label] = {"value": value, "stderr": se}
        path.write_text(json.dumps(cached, indent=1) + "\n")
        print(f"{target} NFE {k} ode-error {label}: {value:.4g} ± {se:.2g}", flush=True)
    return cached


def run(targets: list[str], budgets: list[int], bases: list[str], ode_samples: int) -> None:
    for target in targets:
        backbone, schedule, _ = setting(target)
        metric = metric_of(target, backbone, schedule)
        for k, base in ((k, b) for k in budgets for b in bases):
            solver = learned(target, k, backbone, base)
            row, x, labels, x_T = draw(target, solver, backbone, metric)
            print(
                f"{target} NFE {k}: learned ({base}) fd-digits {row['value']:.4g} ± {row['stderr']:.2g} "
                f"(learned in {solver.seconds:.0f} s)",
                flush=True,
            )
            for budget, tuned in matchups(k):
                best = min(rivals(target, budget, tuned), key=lambda r: r["value"])
                compare(target, row, x, labels, x_T, best, backbone, schedule, metric)
            best = min(rivals(target, k, False), key=lambda r: r["value"])
            if target == "digits-uncond" and base not in STOCHASTIC:  # the metric's reference is the model's ODE
                spacing = json.loads(best["options"]).get("spacing", "trailing")
                ode_errors(target, k, solver, backbone, spacing, ode_samples)


def table(targets: list[str], budgets: list[int], bases: list[str]) -> str:
    """Markdown: the learned solver against the best rival at its NFE (and, at 4, the best at 8), paired SEs."""
    lines = [
        "| target | NFE | learned (base, start, s to learn) | fd-digits ± SE | rivals | best of them | "
        "fd-digits ± SE | rival − learned ± paired SE | / SE |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ode = [
        "| target | NFE | learned (base) | its ode-error | best plain solver | its ode-error | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for target in targets:
        backbone, schedule, _ = setting(target)
        metric = metric_of(target, backbone, schedule)
        for k, base in ((k, b) for k in budgets for b in bases):
            if not (SOLVERS / f"{name_of(target, k, base)}.json").exists():
                continue  # not learned yet: the run command learns it
            solver = ds.load_solver(SOLVERS / f"{name_of(target, k, base)}.json")
            row, x, labels, x_T = draw(target, solver, backbone, metric)
            for budget, tuned in matchups(k):
                best = min(rivals(target, budget, tuned), key=lambda r: r["value"])
                diff, se = compare(target, row, x, labels, x_T, best, backbone, schedule, metric)
                rival = f"{cell_label(best)} ({best['steps']} steps, NFE {best['nfe']:g})"
                lines.append(
                    f"| {target} | {k} | {base}, {solver.init_spacing}, {solver.seconds:.0f} s | {row['value']:.3g} ± "
                    f"{row['stderr']:.2g} | {KINDS[tuned]} | {rival} | {best['value']:.3g} ± {best['stderr']:.2g} | "
                    f"{diff:+.3g} ± {se:.2g} | {diff / se:+.1f} |"
                )
            if not (OUT / target / f"ode-error-nfe{k}.json").exists():
                continue
            errs = json.loads((OUT / target / f"ode-error-nfe{k}.json").read_text())
            ours = errs.get("learned" + named(base, " "))
            if ours is None:
                continue
            plain = min((v["value"], name) for name, v in errs.items() if not name.startswith("learned"))
            ode.append(
                f"| {target} | {k} | {base} | {ours['value']:.3g} | {plain[1]} | {plain[0]:.3g} | "
                f"{plain[0] / ours['value']:.2f}× |"
            )
    return "\n".join(lines) + "\n\n" + "\n".join(ode) + "\n"


def mixture() -> str:
    """The exact mixture: per-component mean and variance errors of a learned NFE-4 solver and of every
    sampler × spacing at NFE 4 (the solver learned from seed 2000003, all scored on seed 0)."""
    gm = ds.GaussianMixture(
        means=[[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]],
        weights=[0.5, 0.3, 0.2],
        variances=[[0.3, 0.5], [0.4, 0.2], [0.25, 0.25]],
    )
    s = ds.SCHEDULES.get("linear")()
    start = time.perf_counter()
    solver = ds.learn_solver(
        gm, schedule=s, nfe=4, shape=(2,), num_pairs=1024, batch_size=128, epochs=100, model_name="mixture"
    )
    seconds = time.perf_counter() - start
    n = 20000
    x_T = torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def errors(x: torch.Tensor) -> tuple[float, float]:
        k = gm.posterior(x).argmax(1)
        mean = sum((x[k == c].mean(0) - gm.means[c]).norm().item() for c in range(3)) / 3
        var = sum((x[k == c].var(0) - gm.variances[c]).abs().sum().item() for c in range(3)) / 3
        return mean, var

    teacher = ds.sample(gm, schedule=s, sampler="dpm-solver++", order=3, steps=50, x_T=x_T)
    results = {
        "learned": errors(ds.sample(gm, schedule=s, solver=solver, x_T=x_T)),
        "teacher (NFE 50)": errors(teacher),
    }
    for name in ds.SAMPLERS.names():
        for sp in ds.SPACINGS.names():
            try:
                steps = ds.steps_for_nfe(name, s, 4, sp)
                if steps is None:
                    continue
                x = ds.sample(
                    gm,
                    schedule=s,
                    sampler=name,
                    steps=steps,
                    spacing=sp,
                    x_T=x_T,
                    generator=torch.Generator().manual_seed(1),
                )
            except (ValueError, TypeError, KeyError):  # spacings that need options (ays), or too few steps
                continue
            if torch.isfinite(x).all():
                results[f"{name} {sp}"] = errors(x)
    (OUT / "mixture.json").parent.mkdir(parents=True, exist_ok=True)
    (OUT / "mixture.json").write_text(
        json.dumps(
            {"seconds": seconds, "errors": results, "solver": json.loads(json.dumps(solver.__dict__, default=str))},
            indent=1,
        )
        + "\n"
    )
    rows = sorted(results.items(), key=lambda kv: kv[1][0] + kv[1][1])
    lines = ["| solver at NFE 4 | mean error | variance error |", "|---|---|---|"]
    lines += [f"| {k} | {m:.4f} | {v:.4f} |" for k, (m, v) in rows[:8]]
    plain = {k: v for k, v in results.items() if not k.startswith(("learned", "teacher"))}
    best_mean, best_var = min(v[0] for v in plain.values()), min(v[1] for v in plain.values())
    lines.append(
        f"\nlearned in {seconds:.0f} s; {len(plain)} plain solver × spacing cells; best plain mean "
        f"error {best_mean:.4f}, variance error {best_var:.4f}"
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--targets", default="digits-uncond,digits-cond")
    p.add_argument("--nfe", default="4,5,6")
    p.add_argument("--bases", default=DEFAULT_BASE, help="comma-separated bases of the learned solvers")
    p.add_argument("--ode-samples", type=int, default=100)
    p.add_argument("--table", action="store_true")
    p.add_argument("--mixture", action="store_true")
    a = p.parse_args()
    ds.retain_freed_memory()
    targets, budgets, bases = a.targets.split(","), [int(v) for v in a.nfe.split(",")], a.bases.split(",")
    if a.mixture:
        text = mixture()
        (OUT / "mixture.md").write_text(text)
    elif a.table:
        text = table(targets, budgets, bases)
        (OUT / "table.md").write_text(text)
    else:
        run(targets, budgets, bases, a.ode_samples)
        return
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
