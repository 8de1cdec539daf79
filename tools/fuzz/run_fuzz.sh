#!/usr/bin/env bash
# Builds the safetensors parser's libFuzzer harness with clang++-14 (AddressSanitizer and
# UndefinedBehaviorSanitizer, every report fatal) straight from src/safetensors.cc, generates a
# seed corpus, runs the fuzzer for the given number of seconds, and prints the executions and
# findings. Exits non-zero when there is a finding.
#
#   tools/fuzz/run_fuzz.sh [seconds (default 60)] [extra libFuzzer flags...]
#
# Needs clang-14 with its runtime (apt-get install -y clang-14 libclang-rt-14-dev) and
# nlohmann-json3-dev. Work files go to build-fuzz/ (or $FUZZ_DIR): the growing corpus in
# corpus/, crash inputs in artifacts/, the log in fuzz.log. Reproduce a finding with
#   build-fuzz/fuzz_safetensors build-fuzz/artifacts/<file>
set -euo pipefail

seconds=${1:-60}
shift || true
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=${FUZZ_DIR:-$root/build-fuzz}
cxx=${FUZZ_CXX:-clang++-14}

if ! command -v "$cxx" >/dev/null; then
  echo "run_fuzz.sh: $cxx not found (apt-get install -y clang-14 libclang-rt-14-dev)" >&2
  exit 2
fi
mkdir -p "$work/corpus" "$work/seeds" "$work/artifacts"

flags=(-std=c++17 -g -I"$root/include")
echo "building $work/fuzz_safetensors"
"$cxx" "${flags[@]}" -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
  -fno-sanitize-recover=all "$root/tools/fuzz/fuzz_safetensors.cc" "$root/src/safetensors.cc" \
  -o "$work/fuzz_safetensors"
"$cxx" "${flags[@]}" -O1 "$root/tools/fuzz/make_seeds.cc" "$root/src/safetensors.cc" \
  -o "$work/make_seeds"
"$work/make_seeds" "$work/seeds"
cp "$root/tests/fixtures/python_written.safetensors" "$work/seeds/"

before=$(find "$work/artifacts" -type f | wc -l)
echo "fuzzing for $seconds s ($(ls "$work/seeds" | wc -l) seeds, $(ls "$work/corpus" | wc -l) corpus entries)"
set +e
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
"$work/fuzz_safetensors" "$work/corpus" "$work/seeds" \
  -dict="$root/tools/fuzz/safetensors.dict" -max_total_time="$seconds" -max_len=4096 \
  -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$work/artifacts/" -print_final_stats=1 \
  "$@" >"$work/fuzz.log" 2>&1
status=$?
set -e

runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/fuzz.log" | grep -o '[0-9]*$' | tail -1)
done_line=$(grep -E '^Done [0-9]+ runs' "$work/fuzz.log" | tail -1 || true)
cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' "$work/fuzz.log" | tail -1 || true)
after=$(find "$work/artifacts" -type f | wc -l)
findings=$((after - before))

echo "executions: ${runs:-unknown}${done_line:+ ($done_line)}"
echo "coverage:   ${cov:-unknown}"
echo "findings:   $findings (libFuzzer exit status $status)"
if [ "$findings" -gt 0 ] || [ "$status" -ne 0 ]; then
  grep -E 'ERROR|SUMMARY|runtime error|fuzz_safetensors:|deadly signal|Test unit written' \
    "$work/fuzz.log" | head -20
  find "$work/artifacts" -type f -newer "$work/make_seeds" | sed 's/^/  artifact: /'
  exit 1
fi
