#!/usr/bin/env bash
# Rehearses tools/gpu_check.sh here, as the bare GPU machine will run it: inside a Debian trixie
# chroot, which has a newer compiler (GCC 14) and none of this project's libraries, on a copy of
# the working tree plus .gpu_deps/ (what the device call sends), with CUDA's toolkit bound in.
# Without a GPU the CUDA tests skip; the rest runs as it will there: the build against the
# archive, the CPU tests and benchmarks under the newer compiler, the report.
#
# Usage: tools/gpu_check_rehearsal.sh [REPORT_DIR]   (default: ./gpu_rehearsal)
# Needs root and the Debian mirror; installs debootstrap when missing. The chroot is kept in
# $ZSCRGAN_REHEARSAL_ROOT (default /tmp/zscrgan-trixie) for the next rehearsal.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
REPORT_DIR=${1:-./gpu_rehearsal}
CHROOT=${ZSCRGAN_REHEARSAL_ROOT:-/tmp/zscrgan-trixie}
note() { echo "gpu_check_rehearsal: $*" >&2; }

[ "$(id -u)" -eq 0 ] || { note "needs root (debootstrap, chroot and bind mounts)"; exit 1; }
if [ ! -x "$CHROOT/usr/bin/g++" ] || [ ! -x "$CHROOT/usr/bin/python3" ]; then
  command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
  note "creating a Debian trixie chroot in $CHROOT (about a minute)"
  rm -rf "$CHROOT"
  debootstrap --variant=minbase --include=g++,make,cmake,python3 trixie "$CHROOT" \
    http://deb.debian.org/debian >"$CHROOT.log" 2>&1 || { note "debootstrap failed: $CHROOT.log"; exit 1; }
fi
[ -f .gpu_deps/deps.tar.gz ] || bash tools/gpu_deps.sh

# The tree as the device call sends it: tracked and untracked-but-not-ignored files, and the
# carried .gpu_deps.
rm -rf "$CHROOT/repo" "$CHROOT/report"
mkdir -p "$CHROOT/repo"
git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -C "$CHROOT/repo" -xf -
cp -r .gpu_deps "$CHROOT/repo/"

mounted=()
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
bind() {  # bind SOURCE TARGET_IN_CHROOT [ro]
  mkdir -p "$CHROOT$2"
  mount --bind "$1" "$CHROOT$2"
  mounted+=("$CHROOT$2")
  if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$CHROOT$2"; fi
}
bind /proc /proc
bind /sys /sys
bind /dev /dev
[ -d /usr/local/cuda/ ] && bind /usr/local/cuda/ /usr/local/cuda ro

# No GPU here, so no "native" architecture to build for: Hopper, the GPU machine's.
set +e
chroot "$CHROOT" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root ZSCRGAN_CUDA_ARCHS=90 bash -c 'cd /repo && bash tools/gpu_check.sh /report'
rc=$?
set -e
mkdir -p "$REPORT_DIR"
cp "$CHROOT"/report/* "$REPORT_DIR"/ 2>/dev/null || true
note "gpu_check.sh exited $rc; its report and logs are in $REPORT_DIR"
exit $rc
