#!/usr/bin/env bash
# Rehearses tools/gpu_check.sh here, as the bare GPU machine will run it: inside a Debian 13
# chroot, which has a newer compiler (GCC 14) and none of this project's libraries, on a copy of
# the working tree plus .gpu_deps/ (what the device call sends), with CUDA's toolkit bound in.
# Without a GPU the CUDA tests skip; the rest runs as it will there: the build against the
# archive, the CPU tests and benchmarks under the newer compiler, the report.
#
# Usage: tools/gpu_check_rehearsal.sh [REPORT_DIR]   (default: ./gpu_rehearsal)
# Needs root and the Debian mirror. The chroot is kept in $ZSCRGAN_REHEARSAL_ROOT (default
# /tmp/zscrgan-trixie) for the next rehearsal; nothing is installed into it.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/debian13_chroot.sh
REPORT_DIR=${1:-./gpu_rehearsal}
CHROOT=${ZSCRGAN_REHEARSAL_ROOT:-/tmp/zscrgan-trixie}

debian13_chroot "$CHROOT"
[ -f .gpu_deps/deps.tar.gz ] || bash tools/gpu_deps.sh
debian13_copy_tree "$CHROOT"
cp -r .gpu_deps "$CHROOT/repo/"
rm -rf "$CHROOT/repo/report"
debian13_mount "$CHROOT"

# No GPU here, so no "native" architecture to build for: Hopper, the GPU machine's.
set +e
DEBIAN13_ENV=ZSCRGAN_CUDA_ARCHS=90 debian13_run "$CHROOT" bash tools/gpu_check.sh /repo/report
rc=$?
set -e
mkdir -p "$REPORT_DIR"
cp "$CHROOT"/repo/report/* "$REPORT_DIR"/ 2>/dev/null || true
debian13_note "gpu_check.sh exited $rc; its report and logs are in $REPORT_DIR"
exit $rc
