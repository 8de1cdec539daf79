#!/usr/bin/env bash
# Installs what is missing, builds everything (the CUDA sources too when nvcc is present, so a
# CUDA compile error fails here), and runs every test. CUDA tests skip, saying why, without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install_deps.sh
bash tools/build.sh
# ctest runs two test processes at once on what may be 2 cores: threads that spin while
# waiting (libgomp's default) would take the cores from each other, so they sleep.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
cd build

# First the retrieval, inference and end-to-end tests with the GEMM library capped at another
# kernel generation than this CPU's own (other blocking, other summation order), so that a test
# which holds only for one machine's kernels fails on every machine, not just on some. oneDNN
# dispatches by ISA; ONEDNN_MAX_CPU_ISA caps it (AVX2 on AVX-512 machines, SSE4.1 on others).
if grep -qw avx512f /proc/cpuinfo; then gemm_isa=AVX2; else gemm_isa=SSE41; fi
echo "== retrieval and end-to-end tests with ONEDNN_MAX_CPU_ISA=$gemm_isa"
ONEDNN_MAX_CPU_ISA=$gemm_isa ctest --output-on-failure --timeout 600 -j 2 \
  -R 'Topk|Retriev|Inference|EndToEnd|CapturedTrainer'

# The CPU backend's own loops at a lower level than this CPU's best (backend/cpu/cpu_isa.h):
# AVX2 must reproduce the stored end-to-end and oracle values as AVX-512 does (the op-table test
# CpuIsaLevels compares every level with the default on any machine).
if grep -qw avx512f /proc/cpuinfo && grep -qw avx2 /proc/cpuinfo; then
  echo "== end-to-end, oracle and op tests with ZSCRGAN_CPU_ISA=avx2"
  ZSCRGAN_CPU_ISA=avx2 ctest --output-on-failure --timeout 600 -j 2 \
    -R 'EndToEnd|Oracle|BackendOps|CpuIsaLevels|CapturedTrainer'
fi

echo "== every test"
ctest --output-on-failure --timeout 600 -j 2
