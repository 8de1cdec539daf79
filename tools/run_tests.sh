#!/usr/bin/env bash
# Installs what is missing, builds everything (the CUDA sources too when nvcc is present, so a
# CUDA compile error fails here), and runs every test. CUDA tests skip, saying why, without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install_deps.sh
bash tools/build.sh
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
cd build

# First the retrieval, inference and end-to-end tests with the GEMM library forced onto another
# kernel generation than this CPU's own (other blocking, other summation order), so that a test
# which holds only for one machine's kernels fails on every machine, not just on some.
if grep -qw avx512f /proc/cpuinfo; then gemm_kernels=HASWELL; else gemm_kernels=PRESCOTT; fi
echo "== retrieval and end-to-end tests with OPENBLAS_CORETYPE=$gemm_kernels"
OPENBLAS_CORETYPE=$gemm_kernels ctest --output-on-failure --timeout 600 -j 2 \
  -R 'Topk|Retriev|Inference|EndToEnd|CapturedTrainer'

echo "== every test"
ctest --output-on-failure --timeout 600 -j 2
