#!/usr/bin/env bash
# One command that verifies the CUDA backend on a machine with a GPU: builds for the GPU that
# is present (Release, into build-gpu; CUDA architectures from $ZSCRGAN_CUDA_ARCHS, default
# native), runs the whole test binary (CPU and CUDA tests) with XML output, runs the kernel and
# whole-step benchmarks with JSON output, and writes a Markdown report.
#
# Usage: tools/gpu_check.sh [REPORT_DIR]   (default: $OUT when set, else ./gpu_report)
# Needs: cmake, nvcc, a C++ compiler, nvidia-smi, python3 (standard library only), and the
# libraries tools/install_deps.sh installs. A machine without them (the lent GPU machine has no
# package registry) gets them from .gpu_deps/deps.tar.gz, which tools/gpu_deps.sh packs where
# apt works; the device call then names .gpu_deps in `carry`:
#   run(command="bash tools/gpu_check.sh", carry=[".gpu_deps"], timeout_s=600)
# REPORT_DIR receives two files, report.md and gpu_logs.tar.gz (every log, the test XML and the
# benchmark JSON), since the device call brings back only a few files.
# Stays under about 9 minutes: each stage gets at most what is left of a 530 s budget.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
REPORT_DIR=${1:-${OUT:-./gpu_report}}
mkdir -p "$REPORT_DIR"
REPORT_DIR=$(cd "$REPORT_DIR" && pwd)
BUILD=$ROOT/build-gpu
LOGS=$BUILD/gpu_logs  # everything the stages write; report.md and an archive of it go out
rm -rf "$LOGS" && mkdir -p "$LOGS"
BUDGET_S=530
START=$(date +%s)
JOBS=$(nproc)

if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
  export PATH=/usr/local/cuda/bin:$PATH
fi
PYTHON=$(command -v python3 || echo /usr/bin/python3)

left() { echo $((BUDGET_S - ($(date +%s) - START))); }
# stage_timeout CAP: the smaller of CAP and the time left (at least 10 s).
stage_timeout() {
  local l
  l=$(left)
  [ "$l" -lt 10 ] && l=10
  [ "$1" -lt "$l" ] && echo "$1" || echo "$l"
}
note() { echo "gpu_check: $*" >&2; }

# ---- dependencies ---------------------------------------------------------------------------
DEPS_ARCHIVE=$ROOT/.gpu_deps/deps.tar.gz
CMAKE_DEPS=()
if [ -f "$DEPS_ARCHIVE" ]; then
  DEPS=$BUILD/deps
  rm -rf "$DEPS" && mkdir -p "$DEPS" && tar -C "$DEPS" -xzf "$DEPS_ARCHIVE"
  DEPS_LIB=$DEPS/usr/lib/x86_64-linux-gnu
  CMAKE_DEPS=(-DCMAKE_PREFIX_PATH="$DEPS/usr" -DCMAKE_LIBRARY_PATH="$DEPS_LIB")
  # oneDNN's own dependency (libOpenCL) is found through the loader's path, not an RPATH.
  export LD_LIBRARY_PATH=$DEPS_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  note "building against the libraries in $DEPS_ARCHIVE: $(tr '\n' ' ' <"$DEPS/PACKAGES")"
fi

nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader \
  >"$LOGS/gpu.txt" 2>&1 || echo "nvidia-smi failed" >"$LOGS/gpu.txt"
(nvcc --version 2>/dev/null | tail -1) >"$LOGS/nvcc.txt" || true

# ---- build ------------------------------------------------------------------------------
note "building into $BUILD with $JOBS jobs"
build_rc=0
# The Python module is left out: it tests nothing CUDA that zscrgan_tests does not.
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DZSCRGAN_CUDA_ARCHS="${ZSCRGAN_CUDA_ARCHS:-native}" \
  -DZSCRGAN_BUILD_TESTS=ON -DZSCRGAN_BUILD_BENCH=ON -DZSCRGAN_WITH_PYTHON=OFF "${CMAKE_DEPS[@]}" \
  >"$LOGS/configure.log" 2>&1 || build_rc=$?
if [ "$build_rc" -eq 0 ]; then
  timeout "$(stage_timeout 300)" cmake --build "$BUILD" -j "$JOBS" \
    --target zscrgan_tests bench_kernels bench_train_step >"$LOGS/build.log" 2>&1 || build_rc=$?
fi
BUILD_S=$(($(date +%s) - START))

# ---- tests ------------------------------------------------------------------------------
test_rc=-1
if [ "$build_rc" -eq 0 ] && [ -x "$BUILD/zscrgan_tests" ]; then
  note "running zscrgan_tests"
  (cd "$BUILD" && OMP_WAIT_POLICY=PASSIVE timeout "$(stage_timeout 240)" ./zscrgan_tests \
    --gtest_output="xml:$LOGS/tests.xml" >"$LOGS/tests.log" 2>&1)
  test_rc=$?
fi

# ---- benchmarks ---------------------------------------------------------------------------
bench_rc=-1
if [ "$build_rc" -eq 0 ] && [ -x "$BUILD/bench_kernels" ]; then
  note "running bench_kernels"
  OMP_WAIT_POLICY=PASSIVE timeout "$(stage_timeout 120)" "$BUILD/bench_kernels" \
    --benchmark_out="$LOGS/bench_kernels.json" --benchmark_out_format=json \
    >"$LOGS/bench_kernels.log" 2>&1
  bench_rc=$?
fi
step_rc=-1
if [ "$build_rc" -eq 0 ] && [ -x "$BUILD/bench_train_step" ]; then
  note "running bench_train_step (CUDA, and the CPU at the demo size)"
  OMP_WAIT_POLICY=PASSIVE timeout "$(stage_timeout 150)" "$BUILD/bench_train_step" \
    --benchmark_filter='cuda|demo/cpu' \
    --benchmark_out="$LOGS/bench_train_step.json" --benchmark_out_format=json \
    >"$LOGS/bench_train_step.log" 2>&1
  step_rc=$?
fi

# ---- report -----------------------------------------------------------------------------
TOTAL_S=$(($(date +%s) - START))
"$PYTHON" - "$LOGS" "$build_rc" "$test_rc" "$bench_rc" "$step_rc" "$BUILD_S" "$TOTAL_S" <<'EOF'
import json, os, sys, xml.etree.ElementTree as ET

out, build_rc, test_rc, bench_rc, step_rc, build_s, total_s = sys.argv[1:8]
def read(name):
    try:
        with open(os.path.join(out, name)) as f:
            return f.read().strip()
    except OSError:
        return ""

lines = ["# GPU check", ""]
lines.append(f"- GPU: {read('gpu.txt') or 'unknown'}")
lines.append(f"- nvcc: {read('nvcc.txt') or 'unknown'}")
lines.append(f"- build: {'ok' if build_rc == '0' else 'FAILED (exit ' + build_rc + ', see build.log)'} in {build_s} s; whole check {total_s} s")
lines.append("- logs (the *.log named below, tests.xml, the benchmarks' JSON): gpu_logs.tar.gz")
if build_rc != "0":
    # The first errors, so that the device call's output shows why without the archive.
    log = (read("build.log") or read("configure.log")).splitlines()
    errors = [l for l in log if "error" in l.lower() or "could not find" in l.lower()]
    lines += ["", "```"] + (errors[:12] or log[-12:]) + ["```"]
lines.append("")

lines.append("## Tests")
xml_path = os.path.join(out, "tests.xml")
root = None
try:
    root = ET.parse(xml_path).getroot()
except (OSError, ET.ParseError):
    pass
if root is not None:
    passed, skipped, failed = 0, [], []
    def gist(message, n):  # gtest messages start with "file:line"; keep what follows
        body = [l.strip() for l in (message or "").splitlines() if l.strip()]
        body = [l for l in body if l != "Skipped"][1:] or body
        return " / ".join(body[:n])[:400]
    for case in root.iter("testcase"):
        name = f"{case.get('classname')}.{case.get('name')}"
        failures = case.findall("failure")
        if failures:
            failed.append((name, gist(failures[0].get("message"), 4)))
        elif case.find("skipped") is not None or case.get("result") == "skipped" or case.get("status") == "notrun":
            sk = case.find("skipped")
            skipped.append((name, gist(sk.get("message") if sk is not None else "", 1)))
        else:
            passed += 1
    lines.append(f"{passed} passed, {len(skipped)} skipped, {len(failed)} failed (exit code {test_rc}).")
    if failed:
        lines += ["", "Failed:"] + [f"- `{n}`: {m}" for n, m in failed]
    if skipped:
        reasons = {}
        for n, m in skipped:
            reasons.setdefault(m, []).append(n)
        lines += ["", "Skipped:"]
        for m, names in reasons.items():
            shown = ", ".join(f"`{n}`" for n in names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
            lines.append(f"- {len(names)} test(s), {m or 'no reason given'}: {shown}")
else:
    # No XML: the binary crashed or was killed; name the test that was running.
    log = read("tests.log").splitlines()
    running = [l for l in log if l.startswith("[ RUN")]
    lines.append(f"No test results (exit code {test_rc}; see tests.log).")
    if running:
        lines.append(f"Last test started: `{running[-1].split()[-1]}`.")
    if log:
        lines += ["", "```"] + log[-15:] + ["```"]
lines.append("")

def bench_rows(name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f).get("benchmarks", [])
    except (OSError, ValueError):
        return None

lines.append("## Kernels (bench_kernels)")
rows = bench_rows("bench_kernels.json")
if rows is None:
    lines.append(f"No results (exit code {bench_rc}; see bench_kernels.log).")
else:
    lines += ["", "| benchmark | time | GB/s | TFLOP/s |", "|---|---:|---:|---:|"]
    for b in rows:
        if b.get("run_type") == "aggregate":
            continue
        gbs = f"{b['GB/s']:.1f}" if "GB/s" in b else ""
        tfl = f"{b['TFLOP/s']:.2f}" if "TFLOP/s" in b else ""
        lines.append(f"| `{b['name']}` | {b['real_time']:.2f} {b.get('time_unit', '')} | {gbs} | {tfl} |")
lines.append("")

lines.append("## Training steps (bench_train_step)")
rows = bench_rows("bench_train_step.json")
if rows is None:
    lines.append(f"No results (exit code {step_rc}; absent or see bench_train_step.log).")
else:
    lines += ["", "| benchmark | time |", "|---|---:|"]
    for b in rows:
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") not in ("mean", "median"):
            continue
        lines.append(f"| `{b['name']}` | {b['real_time']:.3f} {b.get('time_unit', '')} |")
lines.append("")

with open(os.path.join(out, "report.md"), "w") as f:
    f.write("\n".join(lines))
print("\n".join(lines))
EOF
cp "$LOGS/report.md" "$REPORT_DIR/report.md"
tar -C "$LOGS" -czf "$REPORT_DIR/gpu_logs.tar.gz" .
note "report: $REPORT_DIR/report.md; logs: $REPORT_DIR/gpu_logs.tar.gz"
[ "$build_rc" -eq 0 ] && [ "$test_rc" -eq 0 ]
