"""Every guidance on the bundled digits model at its best scale: fd-digits, accuracy, precision and recall against NFE.

    python benchmarks/guidance.py [--n 500] [--steps 5,10,20] [--sweep-steps 10] [--device cpu|cuda] [--table]

Conditional (the classes in turn): no guidance (w = 1), cfg, cfg-pp, apg, cfg-zero-star, pag,
autoguidance (the bundled ``digits-weak``) and classifier guidance (the bundled noisy classifier,
on the conditional model), each with DDIM (the one sampler every one of them runs with) at
``--steps``. Each guidance's scale is the one with the lowest fd-digits among its ``SCALES`` at
``--sweep-steps``. Unconditional (the null label): no guidance against autoguidance and pag at
matched NFE (the unguided sampler takes twice the steps). Metrics on the bundled clean classifier's
features against the 500 held-out digits, with bootstrap SEs; the classifier's gradient is not a
network evaluation of the diffusion model and is not counted in NFE. Cells go to
benchmarks/results/guidance/cells.json as they finish (an interrupted run keeps them and resumes);
``--table`` prints the table of docs/benchmarks.md, and guidance.png plots fd-digits and accuracy against NFE.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

import torch
from leaderboard import use_device

import diffsampler as ds
from diffsampler.bundled import load_classifier, load_model
from diffsampler.guidance import CFG, ClassifierGuidance
from diffsampler.guidance.apg import APG
from diffsampler.guidance.autoguidance import AutoGuidance
from diffsampler.guidance.cfg_pp import CFGPP
from diffsampler.guidance.cfg_zero_star import CFGZeroStar
from diffsampler.guidance.pag import PAG
from diffsampler.metrics import make_metric

OUT = Path(__file__).parent / "results" / "guidance"
CELLS = OUT / "cells.json"
SCALES = {
    "none": (1.0,),
    "cfg": (1.5, 2.0, 3.0),
    "cfg-pp": (0.4, 0.7, 1.0),
    "apg": (2.0, 4.0),
    "cfg-zero-star": (1.5, 2.5),
    "pag": (1.0, 2.0),
    "autoguidance": (1.5, 2.5),
    "classifier": (1.0, 3.0),
}
UNCONDITIONAL = ("none", "autoguidance", "pag")


def guidances(weak: Any, noisy: Any) -> dict[str, Callable[[float], Any]]:
    return {
        "none": lambda s: None,
        "cfg": lambda s: CFG(scale=s),
        "cfg-pp": lambda s: CFGPP(scale=s),
        "apg": lambda s: APG(scale=s),
        "cfg-zero-star": lambda s: CFGZeroStar(scale=s),
        "pag": lambda s: PAG(scale=s),
        "autoguidance": lambda s: AutoGuidance(weak, scale=s),
        "classifier": lambda s: ClassifierGuidance(noisy, scale=s, pass_labels=True),
    }


def key(setting: str, name: str, scale: float, steps: int) -> str:
    return f"{setting}|{name}|{scale:g}|{steps}"


def load() -> dict[str, dict]:
    return json.loads(CELLS.read_text())["cells"] if CELLS.exists() else {}


def save(cells: dict[str, dict], n: int) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = CELLS.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(
            {
                "command": "python benchmarks/guidance.py",
                "n": n,
                "sampler": "ddim",
                "machine": f"{platform.machine()}, torch {torch.__version__}",
                "cells": cells,
            },
            indent=1,
        )
        + "\n"
    )
    os.replace(tmp, CELLS)


class Runner:
    def __init__(self, n: int, device: str = "cpu") -> None:
        self.n, self.cells, self.device = n, load(), device
        self.unet, weak = load_model("digits", device=device), load_model("digits-weak", device=device)
        self.make = guidances(weak, load_classifier("noisy").to(device))
        self.metrics = {
            m: make_metric(m, self.unet) for m in ("fd-digits", "accuracy-digits", "precision-digits", "recall-digits")
        }

    def cell(self, setting: str, name: str, scale: float, steps: int) -> dict:
        k = key(setting, name, scale, steps)
        if k in self.cells:
            return self.cells[k]
        start, xs, nfe = time.time(), [], 0
        labels = torch.arange(self.n) % 10 if setting == "conditional" else None
        for first in range(0, self.n, 100):
            b = min(100, self.n - first)
            cond = {"class_labels": labels[first : first + b]} if labels is not None else {}
            r = ds.sample(
                self.unet,
                sampler="ddim",
                steps=steps,
                shape=(b, 1, 28, 28),
                full_output=True,
                generator=ds.generators(0, b, start=first),
                guidance=self.make[name](scale),
                cond=cond,
            )
            xs.append(r.samples.cpu())
            nfe = r.nfe
        x = torch.cat(xs)
        row: dict[str, Any] = {"setting": setting, "guidance": name, "scale": scale, "steps": steps, "nfe": nfe}
        for m, metric in self.metrics.items():
            if m == "accuracy-digits" and labels is None:
                continue
            value, se, _ = metric.score(x, labels, x)
            row[m.removesuffix("-digits")], row[m.removesuffix("-digits") + "_se"] = round(value, 4), round(se, 4)
        row["seconds"], row["device"] = round(time.time() - start, 1), self.device
        self.cells[k] = row
        save(self.cells, self.n)
        print(
            f"{setting} {name} scale {scale:g} steps {steps} NFE {nfe}: fd {row['fd']:.3f} ± {row['fd_se']:.3f}"
            + (f", accuracy {row['accuracy']:.3f}" if "accuracy" in row else ""),
            flush=True,
        )
        return row

    def best(self, setting: str, name: str, steps: int) -> float:
        return min(SCALES[name], key=lambda s: self.cell(setting, name, s, steps)["fd"])


def run(n: int, steps: list[int], sweep: int, device: str = "cpu") -> None:
    torch.set_grad_enabled(False)
    r = Runner(n, device)
    for setting, names in (("conditional", list(SCALES)), ("unconditional", list(UNCONDITIONAL))):
        for name in names:
            scale = 1.0 if name == "none" else r.best(setting, name, sweep)
            for k in steps:
                r.cell(setting, name, scale, k)
                if setting == "unconditional" and name == "none":
                    r.cell(setting, name, scale, 2 * k)  # matched NFE for the guided ones


def best_rows(cells: dict[str, dict], setting: str, sweep: int) -> dict[str, list[dict]]:
    """Per guidance: its rows at the scale with the lowest fd-digits at ``sweep`` steps, by NFE."""
    out = {}
    for name in SCALES:
        rows = [c for c in cells.values() if c["setting"] == setting and c["guidance"] == name]
        at = [c for c in rows if c["steps"] == sweep]
        if not at:
            continue
        scale = min(at, key=lambda c: c["fd"])["scale"]
        out[name] = sorted((c for c in rows if c["scale"] == scale), key=lambda c: c["nfe"])
    return out


def table(sweep: int) -> str:
    cells = load()
    lines = []
    for setting in ("conditional", "unconditional"):
        lines += [
            f"\n{setting}:\n",
            "| guidance | scale | NFE | fd-digits ± SE | accuracy | precision | recall |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, rows in best_rows(cells, setting, sweep).items():
            for c in rows:
                acc = f"{c['accuracy']:.3f}" if "accuracy" in c else "—"
                lines.append(
                    f"| {name} | {c['scale']:g} | {c['nfe']:g} | {c['fd']:.3f} ± {c['fd_se']:.3f} | {acc} "
                    f"| {c['precision']:.3f} | {c['recall']:.3f} |"
                )
    return "\n".join(lines)


def plot(sweep: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = load()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, (setting, metric) in zip(
        axes, (("conditional", "fd"), ("conditional", "accuracy"), ("unconditional", "fd"))
    ):
        for name, rows in best_rows(cells, setting, sweep).items():
            rows = [c for c in rows if metric in c]
            ax.errorbar(
                [c["nfe"] for c in rows],
                [c[metric] for c in rows],
                yerr=[c[metric + "_se"] for c in rows],
                marker="o",
                capsize=2,
                label=f"{name} ({rows[0]['scale']:g})",
            )
        ax.set_xscale("log")
        ax.set_xlabel("NFE per sample")
        ax.set_ylabel("fd-digits" if metric == "fd" else "class accuracy")
        ax.set_title(f"{setting}, DDIM")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "guidance.png", dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--steps", default="5,10,20")
    p.add_argument("--sweep-steps", type=int, default=10)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--table", action="store_true", help="print the table and draw the plot from the cells so far")
    a = p.parse_args()
    if not a.table:
        use_device(a.device)
        run(a.n, [int(s) for s in a.steps.split(",")], a.sweep_steps, a.device)
    print(table(a.sweep_steps))
    plot(a.sweep_steps)


if __name__ == "__main__":
    ds.retain_freed_memory()
    main()
