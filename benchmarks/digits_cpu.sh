#!/usr/bin/env bash
# fd-digits (the Fréchet distance in the bundled classifier's features, against the 500 held-out
# digits) against NFE, five samplers, the bundled digits model, unconditional, on the CPU.
# Resumable: run it again to finish an interrupted run. Extra arguments go to `diffsampler bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
diffsampler bench --model digits --metric fd-digits \
  --samplers ddim,ddpm,euler-maruyama,pf-ode:heun,dpm-solver++ --steps 5,10,20 \
  --num-samples 500 --batch-size 100 --device cpu --out benchmarks/results/digits_cpu "$@"
