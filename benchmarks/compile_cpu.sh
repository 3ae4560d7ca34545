#!/usr/bin/env bash
# torch.compile against eager on one digits cell (DDIM, 20 steps, 400 samples, batch 100), side by side;
# compilation happens in bench's untimed warm-up batch, and its cost is printed beside the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results/compile_cpu
rm -rf "$out"
args=(bench --model digits --metric fd-digits --samplers ddim --steps 20 --num-samples 400 --batch-size 100
      --device cpu --quiet)
SECONDS=0; diffsampler "${args[@]}" --out "$out/eager"; eager_total=$SECONDS
cache=$(mktemp -d)  # a cold inductor cache, so that the whole-command time includes a full compilation
SECONDS=0; TORCHINDUCTOR_CACHE_DIR=$cache diffsampler "${args[@]}" --out "$out/compiled" --compile
compiled_total=$SECONDS; rm -rf "$cache"
python - "$out" "$eager_total" "$compiled_total" <<'PY'
import json, sys
out, eager_total, compiled_total = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
eager, compiled = (json.load(open(f"{out}/{d}/results.json"))[0] for d in ("eager", "compiled"))
line = (f"eager: {eager['wall_s']:.1f}s, compiled: {compiled['wall_s']:.1f}s per cell, "
        f"speed-up {eager['wall_s'] / compiled['wall_s']:.2f}x; whole command {eager_total:.0f}s vs "
        f"{compiled_total:.0f}s (cold compilation included); fd-digits {eager['value']:.4f} vs {compiled['value']:.4f}")
print(line)
open(f"{out}/summary.txt", "w").write(line + "\n")
PY
