#!/usr/bin/env bash
# One command to a result: installs what is missing, builds, trains configs/demo.json on the
# embedded synthetic dataset and prints Precision@50 after every round.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install_deps.sh
bash tools/build.sh
# libgomp's default busy-waiting doubles step times on small machines: wait passively.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
exec ./build/zscrgan_cuda --config configs/demo.json "$@"
