#!/usr/bin/env bash
# Runs the README's test command on Debian 13 (GCC 14, oneDNN 3.7, GoogleTest 1.16, matio
# 1.5.28, Python 3.13), in a chroot, on a copy of this tree: what CI (Debian 12) cannot show,
# such as the oneDNN 3 code in src/backend/cpu/onednn_matmul.cc. With a CUDA toolkit in
# /usr/local/cuda the CUDA sources are built too (their tests skip without a GPU).
#
# Usage: tools/check_debian13.sh [COMMAND]   (default: bash tools/run_tests.sh)
# Needs root and the Debian mirror (and PyPI, for the Python module's build). About 7 minutes
# on 2 cores. The chroot, with the packages tools/install_deps.sh installs, is kept in
# $ZSCRGAN_DEBIAN13_ROOT (default /tmp/zscrgan-debian13) for the next run.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/debian13_chroot.sh
CHROOT=${ZSCRGAN_DEBIAN13_ROOT:-/tmp/zscrgan-debian13}

debian13_chroot "$CHROOT"
debian13_copy_tree "$CHROOT"
debian13_mount "$CHROOT"
if [ $# -eq 0 ]; then set -- bash tools/run_tests.sh; fi
debian13_run "$CHROOT" bash tools/install_deps.sh
debian13_run "$CHROOT" "$@"
