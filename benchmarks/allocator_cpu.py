"""CPU sampling with and without ``retain_freed_memory``, side by side in one run.

    python benchmarks/allocator_cpu.py [--batches 64,250] [--rounds 2]

Each measurement is a fresh process (the allocator's setting is per process; MALLOC_* variables cleared)
that samples the bundled digits model with DDIM, 10 steps, the classes in turn, once to warm up and once
timed; the two settings alternate. It records wall and system seconds, minor page faults and peak memory of
the timed run, checks that both settings draw bitwise the same samples, and writes
benchmarks/results/allocator_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

OUT = Path(__file__).parent / "results" / "allocator_cpu.json"
CHILD = """
import hashlib, json, resource, sys, time, torch
import diffsampler as ds
from diffsampler.bench import load_bench_model
took = ds.retain_freed_memory() if sys.argv[1] == "retain" else False
backbone, schedule = load_bench_model("digits")
batch = int(sys.argv[2])
def run():
    return ds.sample(backbone, schedule=schedule, sampler="ddim", steps=10, shape=(batch, *backbone.sample_shape),
                     seed=0, cond={"class_labels": torch.arange(batch) % 10})
run()
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
x = run()
wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"retain": took, "batch": batch, "wall_s": round(wall, 3),
                  "sys_s": round(r1.ru_stime - r0.ru_stime, 3), "minor_faults": r1.ru_minflt - r0.ru_minflt,
                  "max_rss_mib": round(r1.ru_maxrss / 1024),
                  "samples_sha1": hashlib.sha1(x.numpy().tobytes()).hexdigest()}))
"""


def measure(mode: str, batch: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(batch)], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="64,250")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        runs = {"default": [], "retain": []}
        for _ in range(args.rounds):
            for mode in runs:
                runs[mode].append(measure(mode, batch))
        if len({r["samples_sha1"] for rs in runs.values() for r in rs}) != 1:
            raise SystemExit(f"batch {batch}: the two allocator settings drew different samples")
        best = {mode: min(rs, key=lambda r: r["wall_s"]) for mode, rs in runs.items()}
        row = {
            "batch": batch,
            "steps": 10,
            "default": best["default"],
            "retain": best["retain"],
            "speed_up": round(best["default"]["wall_s"] / best["retain"]["wall_s"], 3),
        }
        rows.append(row)
        print(
            f"batch {batch}: {best['default']['wall_s']:.2f} s → {best['retain']['wall_s']:.2f} s "
            f"({row['speed_up']:.2f}×), page faults {best['default']['minor_faults']} → "
            f"{best['retain']['minor_faults']}, peak memory {best['default']['max_rss_mib']} → "
            f"{best['retain']['max_rss_mib']} MiB",
            flush=True,
        )
    OUT.write_text(
        json.dumps(
            {
                "command": "python benchmarks/allocator_cpu.py " + " ".join(sys.argv[1:]),
                "threads": os.cpu_count(),
                "rows": rows,
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
