"""Classifier guidance on the bundled digits model: which scale gives the asked-for class.

    python benchmarks/classifier_guidance.py [--n 50] [--cls 7]

Samples class ``--cls`` with the default sampler (dpm-solver++, 20 steps, seed 0), guided by the
bundled noisy classifier, once on the unconditional model (the null label: what
``--guidance classifier`` does by default) and once on the class-conditional model
(``--guidance-opt pass_labels=true``), and reports the clean classifier's accuracy per scale.
Writes benchmarks/results/classifier_guidance.json.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

import diffsampler as ds
from diffsampler.bundled import load_classifier, load_model
from diffsampler.guidance import ClassifierGuidance

SCALES = {False: (0.0, 4.0, 10.0, 20.0, 40.0), True: (0.0, 2.0, 5.0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--cls", type=int, default=7)
    args = ap.parse_args()
    unet, clean, noisy = load_model("digits"), load_classifier("clean"), load_classifier("noisy")
    y = torch.full((args.n,), args.cls)
    rows = []
    for pass_labels, scales in SCALES.items():
        for s in scales:
            x = ds.sample(
                unet,
                sampler="dpm-solver++",
                steps=20,
                shape=(args.n, 1, 28, 28),
                seed=0,
                guidance=ClassifierGuidance(noisy, scale=s, pass_labels=pass_labels),
                cond={"class_labels": y},
            )
            with torch.no_grad():
                acc = (clean(x).argmax(1) == y).float().mean().item()
            rows.append({"model": "conditional" if pass_labels else "unconditional", "scale": s, "accuracy": acc})
            print(f"{rows[-1]['model']:>13} model, classifier scale {s:g}: accuracy {acc:.2f}", flush=True)
    out = Path(__file__).parent / "results" / "classifier_guidance.json"
    out.write_text(
        json.dumps(
            {
                "command": "python benchmarks/classifier_guidance.py",
                "n": args.n,
                "class": args.cls,
                "machine": f"{platform.machine()}, torch {torch.__version__}",
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    ds.retain_freed_memory()
    main()
