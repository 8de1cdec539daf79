#!/usr/bin/env bash
# Packs the libraries that tools/gpu_check.sh needs and the GPU machine lacks into one archive.
#
# The GPU machine has nvcc, CMake, a C++ compiler and Python, but no package registry and none of
# the Debian libraries this build links (oneDNN, nlohmann/json, GoogleTest, Google Benchmark).
# Run this where apt works; the archive then travels with the working tree (it is ignored by
# git, so the device call names it in `carry`), and tools/gpu_check.sh unpacks it and builds
# against it. The .mat importer's matio is left out: the GPU check does not need it.
#
# Usage: tools/gpu_deps.sh [ARCHIVE]   (default: .gpu_deps/deps.tar.gz)
set -euo pipefail
cd "$(dirname "$0")/.."
ARCHIVE=${1:-.gpu_deps/deps.tar.gz}

# Headers and CMake configs (-dev) and the shared libraries they link at run time. libdnnl2
# links libOpenCL.so.1 for a GPU runtime this project never uses, but the loader still needs it.
packages=(nlohmann-json3-dev libdnnl-dev libdnnl2 ocl-icd-libopencl1 libgtest-dev
          libbenchmark-dev libbenchmark1debian)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get -o APT::Sandbox::User="$(id -un)" download -qq "${packages[@]}") || {
  echo "gpu_deps: apt-get download failed for: ${packages[*]}" >&2
  exit 1
}
mkdir "$work/root"
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
# Documentation is most of what is not a library or a header.
rm -rf "$work/root/usr/share/doc" "$work/root/usr/share/lintian" "$work/root/usr/share/man"
# The image's own compiler and runtime libraries are used; only the packages' files travel.
(cd "$work" && ls -1 ./*.deb | sed 's|^\./||') >"$work/root/PACKAGES"

mkdir -p "$(dirname "$ARCHIVE")"
tmp="$ARCHIVE.tmp.$$"
tar -C "$work/root" -czf "$tmp" .
mv "$tmp" "$ARCHIVE"
echo "gpu_deps: wrote $ARCHIVE ($(du -h "$ARCHIVE" | cut -f1)) from:"
sed 's/^/  /' "$work/root/PACKAGES"
