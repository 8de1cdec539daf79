# A Debian 13 (trixie) chroot for the checks that need a newer toolchain than this machine's:
# GCC 14, and none of this project's libraries until something installs them. Sourced by
# tools/gpu_check_rehearsal.sh and tools/check_debian13.sh; needs root and the Debian mirror.
#
#   debian13_chroot DIR        creates it in DIR unless it is there (about a minute)
#   debian13_mount DIR         binds /proc, /sys, /dev and the CUDA toolkit into it; unbound on exit
#   debian13_copy_tree DIR     copies this tree as the device call sends it (tracked and
#                              untracked-but-not-ignored files) to DIR/repo
#   debian13_run DIR CMD...    runs CMD in DIR/repo inside it, with a clean environment (plus
#                              the VAR=value words of $DEBIAN13_ENV)

debian13_note() { echo "${0##*/}: $*" >&2; }

debian13_chroot() {
  local dir=$1
  [ "$(id -u)" -eq 0 ] || { debian13_note "needs root (debootstrap, chroot and bind mounts)"; return 1; }
  if [ -x "$dir/usr/bin/g++" ] && [ -x "$dir/usr/bin/python3" ]; then return 0; fi
  command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
  debian13_note "creating a Debian trixie chroot in $dir (about a minute)"
  rm -rf "$dir"
  debootstrap --variant=minbase --include=g++,make,cmake,python3,ca-certificates trixie "$dir" \
    http://deb.debian.org/debian >"$dir.log" 2>&1 || { debian13_note "debootstrap failed: $dir.log"; return 1; }
  # This machine's extra certificate authorities (a proxy's, say), so that apt and pip work.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$dir/usr/local/share/ca-certificates/"
    chroot "$dir" update-ca-certificates >/dev/null 2>&1 || true
  fi
  [ -f /etc/pip.conf ] && cp /etc/pip.conf "$dir/etc/pip.conf"
  return 0
}

DEBIAN13_MOUNTED=()
debian13_unmount() {
  local i
  for ((i = ${#DEBIAN13_MOUNTED[@]} - 1; i >= 0; i--)); do umount "${DEBIAN13_MOUNTED[i]}" 2>/dev/null || true; done
  DEBIAN13_MOUNTED=()
}
debian13_bind() {  # SOURCE TARGET_IN_CHROOT [ro]
  mkdir -p "$DEBIAN13_DIR$2"
  mount --bind "$1" "$DEBIAN13_DIR$2"
  DEBIAN13_MOUNTED+=("$DEBIAN13_DIR$2")
  if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$DEBIAN13_DIR$2"; fi
}
debian13_mount() {
  DEBIAN13_DIR=$1
  trap debian13_unmount EXIT
  debian13_bind /proc /proc
  debian13_bind /sys /sys
  debian13_bind /dev /dev
  if [ -d /usr/local/cuda/ ]; then debian13_bind /usr/local/cuda/ /usr/local/cuda ro; fi
}

debian13_copy_tree() {
  local dir=$1
  rm -rf "$dir/repo"
  mkdir -p "$dir/repo"
  git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -C "$dir/repo" -xf -
}

debian13_run() {
  local dir=$1
  shift
  chroot "$dir" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root ${DEBIAN13_ENV:-} bash -c 'cd /repo && "$@"' bash "$@"
}
