#!/usr/bin/env bash
# Our EM round against the same round in PyTorch, measured in the same run on the same machine:
# bench_train_step's round benchmark (round/<size>/<device>) and tools/torch_peer/zscrgan_torch.py,
# both with OMP_WAIT_POLICY=PASSIVE and the same thread count. On the CPU the PyTorch peer runs
# a second time on one thread when --threads is above 1 (eager PyTorch on small matrices is often
# faster single-threaded than with waking OpenMP workers) and the faster of the two counts, so
# the ratio is against PyTorch's better setting (--torch-active adds a third: PyTorch on all
# threads with libgomp's default spinning, fast on an idle machine, very slow on a busy one).
# Prints size, device, seconds per round for each, the PyTorch setting that counted and the
# speed-up (PyTorch's time / ours). Builds nothing.
#
# Usage: bash bench/compare_with_pytorch.sh [--published] [--device cpu|cuda] [--rounds N]
#                                           [--threads N] [--bench PATH] [--torch-active]
#   --published   also the published size (slow on a CPU: tens of seconds per round each)
#   --device      cpu (default) or cuda
#   --rounds N    timed PyTorch rounds after its warm-up round (default 3 at demo, 1 at published)
#   --threads N   threads for both (default: every core this process may use); PyTorch
#                 also runs on 1 thread and the faster counts
#   --bench PATH  bench_train_step to run (default ./build/bench_train_step)
#   --torch-active  also time PyTorch with OMP_WAIT_POLICY=ACTIVE (CPU only)
# Environment: PYTHON, a Python with torch (default ./.venv/bin/python if present, else python3);
# install it with: python3 -m venv .venv && .venv/bin/python -m pip install -r tools/torch_peer/requirements.txt
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

die() { echo "compare_with_pytorch: error: $*" >&2; exit 1; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

sizes=(demo)
device=cpu
rounds=""
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
if [ -n "$rounds" ] && ! [[ "$rounds" =~ ^[1-9][0-9]*$ ]]; then die "--rounds must be a positive integer, not '$rounds'"; fi
if [ -z "$threads" ]; then threads="$(nproc)"; fi
[[ "$threads" =~ ^[1-9][0-9]*$ ]] || die "--threads must be a positive integer, not '$threads'"

[ -e "$bench" ] || die "$bench is missing: build it first (bash tools/build.sh), or name another with --bench PATH"
[ -x "$bench" ] || die "$bench is not executable"

if [ -z "${PYTHON:-}" ]; then
  if [ -x "$root/.venv/bin/python" ]; then PYTHON="$root/.venv/bin/python"; else PYTHON=python3; fi
fi
command -v "$PYTHON" >/dev/null || die "no Python '$PYTHON' (set PYTHON to a Python that has torch)"
"$PYTHON" -c 'import torch' 2>/dev/null ||
  die "$PYTHON has no torch; install it: python3 -m venv .venv && .venv/bin/python -m pip install -r tools/torch_peer/requirements.txt (or set PYTHON)"
peer="$root/tools/torch_peer/zscrgan_torch.py"
[ -f "$peer" ] || die "$peer is missing"

if [ "$device" = cuda ]; then
  "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null ||
    die "--device cuda: torch in $PYTHON sees no usable GPU"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Both sides wait passively: libgomp's default spinning doubles step times on small machines.
export OMP_WAIT_POLICY=PASSIVE
export OMP_NUM_THREADS="$threads"

# Is our round benchmark there for this device (the CUDA ones exist only with a usable GPU)?
"$bench" --benchmark_list_tests=true >"$tmp/list" 2>"$tmp/list.err" ||
  { cat "$tmp/list.err" >&2; die "$bench --benchmark_list_tests failed"; }
for size in "${sizes[@]}"; do
  grep -q "^round/$size/$device/" "$tmp/list" ||
    die "$bench has no round/$size/$device benchmark (it lists: $(grep '^round/' "$tmp/list" | tr '\n' ' '))"
done

# Median seconds per round from a Google Benchmark JSON report (the aggregate median when it
# repeated, else the single run).
ours_seconds() {
  "$PYTHON" - "$1" "$2" <<'EOF'
import json, sys
report, prefix = sys.argv[1], sys.argv[2]
with open(report) as f:
    runs = [b for b in json.load(f)["benchmarks"] if b["name"].startswith(prefix)]
pick = [b for b in runs if b.get("aggregate_name") == "median"] or \
       [b for b in runs if b.get("run_type") == "iteration"]
if not pick:
    sys.exit("no %s result in %s" % (prefix, report))
scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[pick[0]["time_unit"]]
print("%.6f" % (pick[0]["real_time"] * scale))
EOF
}

echo "threads: $threads, OMP_WAIT_POLICY=PASSIVE; bench: $bench; torch: $("$PYTHON" -c 'import warnings; warnings.simplefilter("ignore"); import torch; print(torch.__version__)' 2>/dev/null) ($PYTHON)" >&2
rows=()
for size in "${sizes[@]}"; do
  echo "[$size/$device] ours: $bench --benchmark_filter=round/$size/$device ..." >&2
  "$bench" --benchmark_filter="^round/$size/$device/" --benchmark_format=json \
    >"$tmp/ours-$size.json" 2>"$tmp/ours-$size.err" ||
    { cat "$tmp/ours-$size.err" >&2; die "$bench failed on round/$size/$device"; }
  ours="$(ours_seconds "$tmp/ours-$size.json" "round/$size/$device/")" ||
    die "could not read round/$size/$device from $bench's report"

  n="$rounds"
  if [ -z "$n" ]; then if [ "$size" = demo ]; then n=3; else n=1; fi; fi
  trials=("$threads:PASSIVE")  # PyTorch settings to try: threads:OMP_WAIT_POLICY
  if [ "$device" = cpu ] && [ "$threads" -gt 1 ]; then trials+=("1:PASSIVE"); fi
  if [ "$device" = cpu ] && [ "$torch_active" = 1 ]; then trials+=("$threads:ACTIVE"); fi
  theirs="" theirs_threads=""
  for trial in "${trials[@]}"; do
    th="${trial%%:*}" policy="${trial#*:}"
    echo "[$size/$device] PyTorch: zscrgan_torch.py --size $size --device $device --threads $th --rounds $n (+1 warm-up), OMP_WAIT_POLICY=$policy ..." >&2
    out="$tmp/torch-$size-$th-$policy"
    OMP_WAIT_POLICY="$policy" "$PYTHON" "$peer" --size "$size" --device "$device" --rounds "$n" \
      --threads "$th" --json >"$out.json" 2>"$out.err" ||
      { cat "$out.err" >&2; die "the PyTorch peer failed at $size/$device on $th thread(s)"; }
    t="$("$PYTHON" -c 'import json, sys; print("%.6f" % json.load(open(sys.argv[1]))["round_seconds_median"])' "$out.json")" ||
      die "could not read the PyTorch peer's output: $(cat "$out.json")"
    printf "[%s/%s] PyTorch on %s thread(s), %s: %.3f s/round\n" "$size" "$device" "$th" "$policy" "$t" >&2
    if [ -z "$theirs" ] || awk -v a="$t" -v b="$theirs" 'BEGIN { exit !(a < b) }'; then
      theirs="$t" theirs_threads="${th}thr"
      if [ "$policy" = ACTIVE ]; then theirs_threads="${th}thr,spin"; fi
    fi
  done
  if [ "$device" = cuda ]; then theirs_threads="-"; fi
  rows+=("$size $device $ours $theirs $theirs_threads")
done

printf '\n%-10s %-6s %14s %18s %15s %9s\n' size device "ours (s/round)" "PyTorch (s/round)" "PyTorch setting" speed-up
for r in "${rows[@]}"; do
  read -r size dev ours theirs th <<<"$r"
  printf '%-10s %-6s %14.3f %18.3f %15s %8.2fx\n' "$size" "$dev" "$ours" "$theirs" "$th" \
    "$(awk -v a="$theirs" -v b="$ours" 'BEGIN { printf "%.4f", a / b }')"
done
