#!/usr/bin/env bash
# Our EM round against the same round in PyTorch, measured in the same run on the same machine:
# bench_train_step's round benchmark (round/<size>/<device>) and tools/torch_peer/zscrgan_torch.py
# under every torch found: PyPI's (PYTHON, else ./.venv/bin/python) and Debian's python3-torch
# (/usr/bin/python3, torch 1.13 on oneDNN). The sides alternate (ours, each peer, ours, each
# peer, ...) --alternations times and each side keeps its best round, so a load spike on a
# shared machine cannot fake a ratio; the ratio is against the faster peer. Both sides run on
# the same thread count. Ours runs as it ships, under libgomp's default waiting (spin a while,
# then sleep); each peer is timed under that default and under OMP_WAIT_POLICY=PASSIVE, at the
# demo size also on one thread (eager PyTorch on small matrices is often faster so), and its
# fastest setting counts (--torch-active adds OMP_WAIT_POLICY=ACTIVE: spinning throughout). Prints the CPU
# model, each side's best seconds per round, the peer that counted and the speed-up (the faster
# peer's time / ours). Builds nothing.
#
# Usage: bash bench/compare_with_pytorch.sh [--published] [--device cpu|cuda] [--alternations N]
#                                           [--rounds N] [--threads N] [--bench PATH] [--torch-active]
#   --published       also the published size (slow on a CPU: tens of seconds per round each)
#   --device          cpu (default) or cuda
#   --alternations N  ours/peers alternations per size (default 3 at demo, 2 at published)
#   --rounds N        timed PyTorch rounds per alternation after its warm-up round (default 3
#                     at demo, 1 at published)
#   --threads N       threads for both (default: every core this process may use)
#   --bench PATH      bench_train_step to run (default ./build/bench_train_step)
#   --torch-active    also time PyTorch with OMP_WAIT_POLICY=ACTIVE (CPU only)
# Environment: PYTHON, a Python with PyPI's torch (default ./.venv/bin/python if present; install:
# python3 -m venv .venv && .venv/bin/python -m pip install -r tools/torch_peer/requirements.txt);
# DEBIAN_PYTHON (default /usr/bin/python3; install its torch: apt-get install python3-torch
# libopenblas0-openmp: without an OpenBLAS, Debian's libblas.so.3 is the reference BLAS and the
# peer runs several times slower than it can).
# At least one of them must have torch.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

die() { echo "compare_with_pytorch: error: $*" >&2; exit 1; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

sizes=(demo)
device=cpu
rounds=""
alternations=""
threads=""
bench="./build/bench_train_step"
torch_active=0
while [ $# -gt 0 ]; do
  case "$1" in
    --published) sizes=(demo published) ;;
    --device) [ $# -ge 2 ] || die "--device needs a value (cpu or cuda)"; device="$2"; shift ;;
    --device=*) device="${1#*=}" ;;
    --rounds) [ $# -ge 2 ] || die "--rounds needs a value"; rounds="$2"; shift ;;
    --rounds=*) rounds="${1#*=}" ;;
    --alternations) [ $# -ge 2 ] || die "--alternations needs a value"; alternations="$2"; shift ;;
    --alternations=*) alternations="${1#*=}" ;;
    --threads) [ $# -ge 2 ] || die "--threads needs a value"; threads="$2"; shift ;;
    --threads=*) threads="${1#*=}" ;;
    --bench) [ $# -ge 2 ] || die "--bench needs a path"; bench="$2"; shift ;;
    --bench=*) bench="${1#*=}" ;;
    --torch-active) torch_active=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
  shift
done
case "$device" in cpu|cuda) ;; *) die "--device must be cpu or cuda, not '$device'" ;; esac
for v in rounds alternations; do
  if [ -n "${!v}" ] && ! [[ "${!v}" =~ ^[1-9][0-9]*$ ]]; then die "--$v must be a positive integer, not '${!v}'"; fi
done
if [ -z "$threads" ]; then threads="$(nproc)"; fi
[[ "$threads" =~ ^[1-9][0-9]*$ ]] || die "--threads must be a positive integer, not '$threads'"

[ -e "$bench" ] || die "$bench is missing: build it first (bash tools/build.sh), or name another with --bench PATH"
[ -x "$bench" ] || die "$bench is not executable"
peer="$root/tools/torch_peer/zscrgan_torch.py"
[ -f "$peer" ] || die "$peer is missing"

# The Pythons with torch: PyPI's first, then Debian's.
pypi_python="${PYTHON:-}"
if [ -z "$pypi_python" ] && [ -x "$root/.venv/bin/python" ]; then pypi_python="$root/.venv/bin/python"; fi
debian_python="${DEBIAN_PYTHON:-/usr/bin/python3}"
pythons=()
for py in "$pypi_python" "$debian_python"; do
  [ -n "$py" ] || continue
  command -v "$py" >/dev/null || { echo "compare_with_pytorch: note: no Python '$py'" >&2; continue; }
  if "$py" -c 'import torch' 2>/dev/null; then pythons+=("$py"); else
    echo "compare_with_pytorch: note: $py has no torch (skipped)" >&2; fi
done
[ ${#pythons[@]} -gt 0 ] ||
  die "no Python with torch: python3 -m venv .venv && .venv/bin/python -m pip install -r tools/torch_peer/requirements.txt, or apt-get install python3-torch libopenblas0-openmp (for /usr/bin/python3)"
# A JSON-reading Python for this script: any of them.
jpy="${pythons[0]}"
torch_version() { "$1" -c 'import warnings; warnings.simplefilter("ignore"); import torch; print(torch.__version__)' 2>/dev/null; }

if [ "$device" = cuda ]; then
  gpu_pythons=()
  for py in "${pythons[@]}"; do
    if "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then gpu_pythons+=("$py"); fi
  done
  [ ${#gpu_pythons[@]} -gt 0 ] || die "--device cuda: no torch here sees a usable GPU"
  pythons=("${gpu_pythons[@]}")
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Ours waits as it ships (libgomp's default); the peers' waiting policies are set per trial.
unset OMP_WAIT_POLICY GOMP_SPINCOUNT
export OMP_NUM_THREADS="$threads"

"$bench" --benchmark_list_tests=true >"$tmp/list" 2>"$tmp/list.err" ||
  { cat "$tmp/list.err" >&2; die "$bench --benchmark_list_tests failed"; }
for size in "${sizes[@]}"; do
  grep -q "^round/$size/$device/" "$tmp/list" ||
    die "$bench has no round/$size/$device benchmark (it lists: $(grep '^round/' "$tmp/list" | tr '\n' ' '))"
done

# The fastest round (seconds) in a Google Benchmark JSON report.
ours_best() {
  "$jpy" - "$1" "$2" <<'EOF'
import json, sys
report, prefix = sys.argv[1], sys.argv[2]
with open(report) as f:
    runs = [b for b in json.load(f)["benchmarks"] if b["name"].startswith(prefix)]
# The "min" aggregate when it repeated, else the single run.
pick = [b for b in runs if b.get("aggregate_name") == "min"] or \
       [b for b in runs if b.get("run_type") == "iteration"]
if not pick:
    sys.exit("no %s result in %s" % (prefix, report))
scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[pick[0]["time_unit"]]
print("%.6f" % (min(b["real_time"] for b in pick) * scale))
EOF
}
less_than() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }

cpu="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
echo "CPU: ${cpu:-unknown} ($(nproc) cores usable); threads: $threads; bench: $bench" >&2
for py in "${pythons[@]}"; do echo "peer: torch $(torch_version "$py") ($py)" >&2; done
rows=()
for size in "${sizes[@]}"; do
  n="$rounds"; a="$alternations"
  if [ -z "$n" ]; then if [ "$size" = demo ]; then n=3; else n=1; fi; fi
  if [ -z "$a" ]; then if [ "$size" = demo ]; then a=3; else a=2; fi; fi
  # Peer settings to try: python|threads|OMP_WAIT_POLICY. One thread only at the demo size: at
  # the published size it was 1.4-1.5x slower than two threads in every measurement.
  trials=()
  # The waiting policy matters only with more than one thread, and not on CUDA.
  for py in "${pythons[@]}"; do
    trials+=("$py|$threads|default")
    if [ "$device" = cpu ] && [ "$threads" -gt 1 ]; then trials+=("$py|$threads|PASSIVE"); fi
    if [ "$device" = cpu ] && [ "$threads" -gt 1 ] && [ "$size" = demo ]; then trials+=("$py|1|default"); fi
    if [ "$device" = cpu ] && [ "$threads" -gt 1 ] && [ "$torch_active" = 1 ]; then trials+=("$py|$threads|ACTIVE"); fi
  done
  ours="" theirs="" theirs_what=""
  declare -A best=()
  for ((alt = 1; alt <= a; ++alt)); do
    echo "[$size/$device $alt/$a] ours: $bench --benchmark_filter=round/$size/$device ..." >&2
    "$bench" --benchmark_filter="^round/$size/$device/" --benchmark_format=json \
      >"$tmp/ours.json" 2>"$tmp/ours.err" ||
      { cat "$tmp/ours.err" >&2; die "$bench failed on round/$size/$device"; }
    t="$(ours_best "$tmp/ours.json" "round/$size/$device/")" ||
      die "could not read round/$size/$device from $bench's report"
    printf "[%s/%s %d/%d] ours: %.3f s/round\n" "$size" "$device" "$alt" "$a" "$t" >&2
    if [ -z "$ours" ] || less_than "$t" "$ours"; then ours="$t"; fi
    for trial in "${trials[@]}"; do
      IFS='|' read -r py th policy <<<"$trial"
      what="torch-$(torch_version "$py"),${th}thr"
      if [ "$policy" != default ]; then what="$what,$policy"; fi
      if [ "$device" = cuda ]; then what="torch-$(torch_version "$py")"; fi
      policy_env=(env -u OMP_WAIT_POLICY)
      if [ "$policy" != default ]; then policy_env=(env OMP_WAIT_POLICY="$policy"); fi
      "${policy_env[@]}" OMP_NUM_THREADS="$th" "$py" "$peer" --size "$size" --device "$device" \
        --rounds "$n" --threads "$th" --json >"$tmp/peer.json" 2>"$tmp/peer.err" ||
        { cat "$tmp/peer.err" >&2; die "the PyTorch peer ($py) failed at $size/$device on $th thread(s)"; }
      t="$("$jpy" -c 'import json, sys; print("%.6f" % min(json.load(open(sys.argv[1]))["round_seconds"]))' "$tmp/peer.json")" ||
        die "could not read the PyTorch peer's output: $(cat "$tmp/peer.json")"
      printf "[%s/%s %d/%d] PyTorch %s: %.3f s/round\n" "$size" "$device" "$alt" "$a" "$what" "$t" >&2
      if [ -z "${best[$what]:-}" ] || less_than "$t" "${best[$what]}"; then best[$what]="$t"; fi
      if [ -z "$theirs" ] || less_than "$t" "$theirs"; then theirs="$t" theirs_what="$what"; fi
    done
  done
  for w in "${!best[@]}"; do printf "[%s/%s] best of PyTorch %s: %.3f s/round\n" "$size" "$device" "$w" "${best[$w]}" >&2; done
  unset best
  rows+=("$size $device $ours $theirs $theirs_what $a")
done

echo "CPU: ${cpu:-unknown}"
printf '%-10s %-6s %14s %18s %22s %9s\n' size device "ours (s/round)" "PyTorch (s/round)" "faster PyTorch" speed-up
for r in "${rows[@]}"; do
  read -r size dev ours theirs what alts <<<"$r"
  printf '%-10s %-6s %14.3f %18.3f %22s %8.2fx\n' "$size" "$dev" "$ours" "$theirs" "$what" \
    "$(awk -v a="$theirs" -v b="$ours" 'BEGIN { printf "%.4f", a / b }')"
done
echo "(each side's best round over the alternations, ours and each peer alternating, $threads threads; ours under libgomp's default waiting, each peer's fastest waiting policy)"
