#!/usr/bin/env bash
# Throughput of one digits cell (DDIM, 20 steps, 400 samples, batch 100), side by side:
#   2 processes with 1 thread each, against 1 process with 1 thread (scaling at equal threads per process)
#   and against 1 process with 2 threads (one process already spreading over both cores).
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results/processes_cpu
rm -rf "$out"
args=(bench --model digits --metric fd-digits --samplers ddim --steps 20 --num-samples 400 --batch-size 100
      --device cpu --quiet)
OMP_NUM_THREADS=1 diffsampler "${args[@]}" --out "$out/one_1thread"
OMP_NUM_THREADS=2 diffsampler "${args[@]}" --out "$out/one_2threads"
diffsampler "${args[@]}" --out "$out/two" --num-processes 2  # torchrun sets OMP_NUM_THREADS=1 per process
python - "$out" "$(nproc)" <<'PY'
import json, sys
out, cores = sys.argv[1], sys.argv[2]
one1, one2, two = (json.load(open(f"{out}/{d}/results.json"))[0] for d in ("one_1thread", "one_2threads", "two"))
values = [r["value"] for r in (one1, one2, two)]
assert max(values) - min(values) < 1e-6 * max(values), values  # the same samples in all three
line = (f"{cores} cores. 2 processes × 1 thread: {two['wall_s']:.1f}s; 1 process × 1 thread: {one1['wall_s']:.1f}s "
        f"(throughput ratio {one1['wall_s'] / two['wall_s']:.2f}x); 1 process × 2 threads: {one2['wall_s']:.1f}s "
        f"(ratio {one2['wall_s'] / two['wall_s']:.2f}x)")
print(line)
open(f"{out}/summary.txt", "w").write(line + "\n")
PY
