#!/usr/bin/env bash
# Builds one libFuzzer harness with clang++-14 (AddressSanitizer and UndefinedBehaviorSanitizer,
# every report fatal) straight from the sources it tests, generates a seed corpus, runs the
# fuzzer (one worker) for the given number of seconds, and prints the executions and findings.
# Exits non-zero when there is a finding.
#
#   tools/fuzz/run_fuzz.sh [TARGET] [seconds (default 60)] [extra libFuzzer flags...]
#
# TARGET (default safetensors):
#   safetensors  the safetensors parser and writer (fuzz_safetensors.cc)
#   npy          the .npy whole-file and streaming readers (fuzz_npy.cc)
#   config       the config loader with --set overrides (fuzz_config.cc)
#   mat          the .mat reading of the importers, through matio (fuzz_mat.cc)
# Every harness also checks the one-line message rule (message_rule.h) on each refusal.
#
# Needs clang-14 with its runtime (apt-get install -y clang-14 libclang-rt-14-dev),
# nlohmann-json3-dev, and libmatio-dev for the mat target. Work files go to
# build-fuzz/<target>/ (or $FUZZ_DIR/<target>): the growing corpus in corpus/, crash inputs in
# artifacts/, the log in fuzz.log. Reproduce a finding with
#   build-fuzz/<target>/fuzz_<target> build-fuzz/<target>/artifacts/<file>
# and commit a small one as tools/fuzz/regressions/<target>-<what>, a seed of every later run.
set -euo pipefail

target=safetensors
case "${1:-}" in
  safetensors|npy|config|mat) target=$1; shift ;;
esac
seconds=${1:-60}
shift || true
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=${FUZZ_DIR:-$root/build-fuzz}/$target
cxx=${FUZZ_CXX:-clang++-14}
src=$root/src
case $target in
  safetensors) sources=("$src/formats/safetensors.cc" "$src/core/fileio.cc" "$src/core/error.cc"); libs=(); max_len=4096 ;;
  npy) sources=("$src/formats/npy.cc" "$src/formats/npy_stream.cc" "$src/core/fileio.cc" "$src/core/error.cc"); libs=(); max_len=4096 ;;
  config) sources=("$src/config/config.cc" "$src/core/json_strict.cc" "$src/core/fileio.cc" "$src/core/error.cc"); libs=(); max_len=8192 ;;
  mat) sources=("$src/import/import_mat.cc" "$src/import/import_xlsa17.cc" "$src/import/import_gazsl.cc" "$src/import/import_dataset.cc"
                "$src/data/dataset.cc" "$src/formats/npy.cc" "$src/core/fileio.cc" "$src/core/error.cc" "$src/core/json_strict.cc")
       libs=(-lmatio -lz); max_len=16384 ;;
esac

if ! command -v "$cxx" >/dev/null; then
  echo "run_fuzz.sh: $cxx not found (apt-get install -y clang-14 libclang-rt-14-dev)" >&2
  exit 2
fi
mkdir -p "$work/corpus" "$work/seeds" "$work/artifacts"

# Module headers are reached as "<folder>/<header>" from src/, private ones from their folder.
flags=(-std=c++17 -g -I"$src" -I"$src/formats" -I"$src/import" -DZSCRGAN_HAVE_MATIO=1)
harness=$work/fuzz_$target
echo "building $harness"
"$cxx" "${flags[@]}" -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
  -fno-sanitize-recover=all "$root/tools/fuzz/fuzz_$target.cc" "${sources[@]}" "${libs[@]}" \
  -o "$harness"
"$cxx" "${flags[@]}" -O1 "$root/tools/fuzz/make_seeds.cc" "$src/formats/safetensors.cc" "$src/formats/npy.cc" \
  "$src/core/fileio.cc" "$src/core/error.cc" -lmatio -o "$work/make_seeds"
"$work/make_seeds" "$target" "$work/seeds"
if [ "$target" = safetensors ]; then cp "$root/tests/fixtures/python_written.safetensors" "$work/seeds/"; fi
# Inputs that were findings once (tools/fuzz/regressions/<target>-*) run first, as seeds.
regressions=()
for r in "$root"/tools/fuzz/regressions/"$target"-*; do
  [ -f "$r" ] && { mkdir -p "$work/regressions"; cp "$r" "$work/regressions/"; regressions=("$work/regressions"); }
done
dict=()
if [ "$target" = safetensors ]; then dict=(-dict="$root/tools/fuzz/safetensors.dict"); fi

before=$(find "$work/artifacts" -type f | wc -l)
echo "fuzzing for $seconds s ($(ls "$work/seeds" | wc -l) seeds, $(ls "$work/corpus" | wc -l) corpus entries)"
set +e
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
TMPDIR="$work" "$harness" "$work/corpus" "$work/seeds" "${regressions[@]}" \
  "${dict[@]}" -max_total_time="$seconds" -max_len="$max_len" \
  -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$work/artifacts/" -print_final_stats=1 \
  "$@" >"$work/fuzz.log" 2>&1
status=$?
set -e

runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/fuzz.log" | grep -o '[0-9]*$' | tail -1)
done_line=$(grep -E '^Done [0-9]+ runs' "$work/fuzz.log" | tail -1 || true)
cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' "$work/fuzz.log" | tail -1 || true)
after=$(find "$work/artifacts" -type f | wc -l)
findings=$((after - before))

echo "target:     $target"
echo "executions: ${runs:-unknown}${done_line:+ ($done_line)}"
echo "coverage:   ${cov:-unknown}"
echo "findings:   $findings (libFuzzer exit status $status)"
if [ "$findings" -gt 0 ] || [ "$status" -ne 0 ]; then
  grep -E 'ERROR|SUMMARY|runtime error|fuzz_[a-z]*:|deadly signal|Test unit written' \
    "$work/fuzz.log" | head -20
  find "$work/artifacts" -type f -newer "$work/make_seeds" | sed 's/^/  artifact: /'
  exit 1
fi
