#!/usr/bin/env bash
# Every guidance at its best scale on the bundled digits model: fd-digits, accuracy, precision and
# recall against NFE (DDIM 5, 10, 20 steps, 500 samples), conditional and unconditional; then the
# table and guidance.png. Resumable: run it again to finish an interrupted run.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p results/guidance
python guidance.py "$@" | tee results/guidance/table.md
