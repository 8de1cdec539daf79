#!/usr/bin/env bash
# Creates ./.venv (git-ignored) from Debian's python3 (PEP 668 keeps pip out of the system
# one) with what the Python module builds and tests with, from PyPI: scikit-build-core,
# nanobind, numpy, pytest. tools/build.sh builds the module against it; tools/run_tests.sh runs
# tests/python with it. torch is not installed (the zero-copy torch test skips without it).
set -euo pipefail
cd "$(dirname "$0")/.."
python=/usr/bin/python3
packages=(scikit-build-core nanobind numpy pytest)
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with ${packages[*]}"
  "$python" -m venv .venv
fi
if ! .venv/bin/python -c "import nanobind, numpy, pytest, scikit_build_core" 2>/dev/null; then
  .venv/bin/python -m pip install -q --disable-pip-version-check "${packages[@]}"
fi
