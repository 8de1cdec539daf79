#!/usr/bin/env bash
# Configures and builds into ./build (Release). Builds the CUDA backend when nvcc is found, and
# the Python module (build/python/zscrgan) against ./.venv (tools/python_env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/python_env.sh
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE="$PWD/.venv/bin/python" "$@" >/dev/null
cmake --build build -j "$(nproc)"
