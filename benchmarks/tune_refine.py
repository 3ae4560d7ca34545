"""Does refining a tuned grid pay? The sampler's distance to the PF-ODE on the ring target.

    python benchmarks/tune_refine.py [--samplers dpm-solver++,unipc,heun,deis] [--nfe 5,8,10] [--refine 0,1,3]

For each sampler and NFE: the distance (RMS, 256 samples of the tuning batch) of the sampler's output to
the reference PF-ODE solution on the grid of the dynamic programme alone, after each number of
refinement sweeps, and on the sampler's default spacing. Writes benchmarks/results/tune_refine/ring.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from diffsampler import retain_freed_memory
from diffsampler.bench import load_bench_model
from diffsampler.tuning import tune_grid

OUT = Path(__file__).resolve().parent / "results" / "tune_refine" / "ring.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samplers", default="dpm-solver++,unipc,heun,deis")
    p.add_argument("--nfe", default="5,8,10")
    p.add_argument("--refine", default="0,1,3")
    a = p.parse_args()
    torch.set_num_threads(1)
    backbone, schedule = load_bench_model("gmm-ring")
    rows = []
    for sampler in a.samplers.split(","):
        for nfe in map(int, a.nfe.split(",")):
            row = {"sampler": sampler, "nfe": nfe}
            for refine in map(int, a.refine.split(",")):
                start = time.perf_counter()
                g = tune_grid(backbone, sampler=sampler, nfe=nfe, schedule=schedule, batch=256, refine=refine)
                row[f"refine {refine}"] = round(g.extra["found_distance"], 4)  # the search's grid, kept or not
                row[f"seconds, refine {refine}"] = round(time.perf_counter() - start, 2)
            row[f"default ({g.default_spacing})"] = round(g.default_distance, 4)
            rows.append(row)
            print(json.dumps(row), flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    retain_freed_memory()
    main()
