#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need, when they are missing.
# The CUDA toolkit is not installed here: when /usr/local/cuda (or nvcc on PATH) exists, the
# CUDA backend is built too; otherwise the CPU backend alone.
set -euo pipefail

packages=(cmake make g++ pkg-config libdnnl-dev nlohmann-json3-dev libgtest-dev
          libbenchmark-dev libmatio-dev zlib1g-dev python3-numpy python3-venv python3-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
  echo "error: missing packages (${missing[*]}) and no root rights to install them" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
