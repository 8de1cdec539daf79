#!/usr/bin/env bash
# One command to a result: installs what is missing, builds, trains configs/demo.json on the
# embedded synthetic dataset and prints Precision@50 after every round.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install_deps.sh
bash tools/build.sh
# OpenMP waits as libgomp does by default (spin a while, then sleep): on 2 cores the demo
# trains in 8.4 s so against 12.2 s with OMP_WAIT_POLICY=PASSIVE, which wakes a sleeping thread
# for every parallel region (bench/README.md, "Waiting policy").
# The demo's folder (runs/demo) is its own: each demo run replaces the one before.
exec ./build/zscrgan_cuda --config configs/demo.json --overwrite "$@"
