#!/usr/bin/env bash
# Exact quality on the 2-D ring of 8 Gaussians (Fréchet distance to the true moments, sliced
# Wasserstein distance to exact draws, mean true log-density) against NFE, five samplers.
set -euo pipefail
cd "$(dirname "$0")/.."
diffsampler bench --model gmm-ring --metric exact \
  --samplers ddim,ddpm,euler-maruyama,pf-ode:heun,dpm-solver++ --steps 5,10,20,50,100 \
  --num-samples 2000 --batch-size 1000 --device cpu --out benchmarks/results/gmm_exact "$@"
