#!/usr/bin/env bash
# Throughput of one digits cell (DDIM, 20 steps, 400 samples) with 1 process (2 threads) and with
# 2 processes (1 thread each), side by side; prints the ratio of samples per second.
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results/processes_cpu
rm -rf "$out"
args=(bench --model digits --metric fd-digits --samplers ddim --steps 20 --num-samples 400 --batch-size 100
      --device cpu --quiet)
OMP_NUM_THREADS=2 diffsampler "${args[@]}" --out "$out/one"
diffsampler "${args[@]}" --out "$out/two" --num-processes 2
python - "$out" <<'PY'
import json, sys
one, two = (json.load(open(f"{sys.argv[1]}/{d}/results.json"))[0] for d in ("one", "two"))
ratio = one["wall_s"] / two["wall_s"]
line = f"1 process: {one['wall_s']:.1f}s, 2 processes: {two['wall_s']:.1f}s, throughput ratio {ratio:.2f}x"
print(line)
open(f"{sys.argv[1]}/summary.txt", "w").write(line + "\n")
PY
