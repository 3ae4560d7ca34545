#!/usr/bin/env bash
# Named spacings against the tuned grid for DDIM, DPM-Solver++ and UniPC at NFE 4, 5, 6, 8 and 10, on the exact
# ring and the bundled digits model (unconditional, and conditional at w = 1); then the table. Resumable: run
# it again to finish an interrupted run (tuned grids are kept in results/grids/<target>/tuned/).
set -euo pipefail
cd "$(dirname "$0")"
spacings=trailing,leading,linspace,logsnr,karras,exponential,kl-optimal,beta,sgm-uniform,uniform
python grids.py --spacings "$spacings" "$@"
python grids.py --table > results/grids/table.md
cat results/grids/table.md
