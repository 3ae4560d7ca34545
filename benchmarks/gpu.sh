#!/usr/bin/env bash
# The digits suite on a GPU, in fp32 and bf16 (needs a CUDA machine).
set -euo pipefail
cd "$(dirname "$0")/.."
for dtype in fp32 bf16; do
  diffsampler bench --model digits --metric fd-digits \
    --samplers ddim,ddpm,euler-maruyama,pf-ode:heun,dpm-solver++ --steps 5,10,20,50 \
    --num-samples 2000 --batch-size 500 --device cuda --dtype "$dtype" --out "benchmarks/results/digits_gpu_$dtype" "$@"
done
