#!/usr/bin/env bash
# Checks that one compiled level of the CPU backend's loops (backend/cpu/cpu_isa.h) keeps its
# instruction set to its own functions: every function in the object whose name lies outside
# the level's namespace (inline functions of shared headers, template instantiations: one copy
# of each is kept for the whole program) must be free of AVX instructions, or the baseline
# path could end up calling an AVX copy and die with SIGILL on a CPU without AVX.
#   check_cpu_isa_object.sh OBJECT NAMESPACE     e.g. cpu_backend.cc.o cpu_isa_avx512
set -euo pipefail
obj=$1
ns=$2
command -v objdump > /dev/null || { echo "check_cpu_isa_object.sh: objdump not found (binutils)" >&2; exit 1; }
[ -f "$obj" ] || { echo "check_cpu_isa_object.sh: $obj not found" >&2; exit 1; }
# A function starts at "<address> <name>:"; an AVX instruction is a v-prefixed mnemonic or one
# that names a ymm, zmm or mask register.
objdump -d -C --no-show-raw-insn "$obj" | awk -v ns="$ns" '
  /^[0-9a-f]+ <.*>:$/ { name = $0; sub(/^[0-9a-f]+ </, "", name); sub(/>:$/, "", name); own = index(name, ns) > 0; next }
  !own && name != "" && ($2 ~ /^v/ || $0 ~ /%[yz]mm|%k[0-7]/) { bad[name]++ }
  END {
    n = 0
    for (f in bad) { if (n < 10) printf "AVX code outside %s: %s (%d instructions)\n", ns, f, bad[f]; n++ }
    if (n > 0) { printf "%d functions outside %s hold AVX code\n", n, ns; exit 1 }
  }'
echo "$obj: AVX code only inside $ns"
