#!/usr/bin/env bash
# Installs what is missing, builds everything (the CUDA sources too when nvcc is present, so a
# CUDA compile error fails here), and runs every test. CUDA tests skip, saying why, without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install_deps.sh
bash tools/build.sh
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
cd build
ctest --output-on-failure --timeout 600 -j 2
