#!/usr/bin/env bash
# Every sampler × NFE ∈ {3, 5, 8, 10, 15, 20, 50} on the exact ring and the bundled digits model
# (unconditional, and conditional at w = 1), with diffusers' schedulers in the same table; then the
# table of the best solver per NFE. Resumable: run it again to finish an interrupted run.
set -euo pipefail
cd "$(dirname "$0")"
python leaderboard.py --nfe 3,5,8,10,15,20,50 "$@"
python leaderboard.py --nfe 3,5,8,10,15,20,50 --table > results/leaderboard/best.md
cat results/leaderboard/best.md
