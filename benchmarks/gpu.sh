#!/usr/bin/env bash
# The digits suite on a GPU in fp32 and bf16, then torch.compile against eager on one cell
# (needs a CUDA machine).
set -euo pipefail
cd "$(dirname "$0")/.."
for dtype in fp32 bf16; do
  diffsampler bench --model digits --metric fd-digits \
    --samplers ddim,ddpm,euler-maruyama,pf-ode:heun,dpm-solver++ --steps 5,10,20,50 \
    --num-samples 2000 --batch-size 500 --device cuda --dtype "$dtype" --out "benchmarks/results/digits_gpu_$dtype" "$@"
done
out=benchmarks/results/compile_gpu
rm -rf "$out"
args=(bench --model digits --metric fd-digits --samplers ddim --steps 50 --num-samples 2000 --batch-size 500
      --device cuda --quiet)
diffsampler "${args[@]}" --out "$out/eager"
diffsampler "${args[@]}" --out "$out/compiled" --compile
python - "$out" <<'PY'
import json, sys
eager, compiled = (json.load(open(f"{sys.argv[1]}/{d}/results.json"))[0] for d in ("eager", "compiled"))
line = f"GPU eager {eager['wall_s']:.2f}s, compiled {compiled['wall_s']:.2f}s: {eager['wall_s'] / compiled['wall_s']:.2f}x"
print(line)
open(f"{sys.argv[1]}/summary.txt", "w").write(line + "\n")
PY
