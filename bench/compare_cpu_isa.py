#!/usr/bin/env python3
"""Times the CPU backend's loop levels (ZSCRGAN_CPU_ISA=baseline|avx2|avx512) against each other.

Runs bench_kernels' RMSProp, Adam and bias/activation families and bench_train_step's demo
round (round/demo/cpu, fastest of its 3 repetitions) under every level this CPU supports,
alternating the levels --alternations times in one run and keeping each level's best time per
benchmark, then prints the CPU model, the times and each level's ratio against the fastest
level that the CPU supports without AVX-512 (avx2, else baseline).

Any python3 (standard library only). Needs ./build/bench_kernels and ./build/bench_train_step:
    python3 bench/compare_cpu_isa.py [--alternations 3] [--build build] [--no-round]
"""
import argparse
import json
import os
import subprocess
import sys

KERNELS = r"^(bias_act_forward|bias_act_backward|rmsprop_clip|adam)/cpu/"
ROUND = r"^round/demo/cpu/"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def supported_levels():
    flags = cpu_flags()
    levels = ["baseline"]
    if {"avx2", "fma"} <= flags:
        levels.append("avx2")
        if {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"} <= flags:
            levels.append("avx512")
    return levels


def run_json(cmd, level):
    env = dict(os.environ, ZSCRGAN_CPU_ISA=level)
    env.pop("OMP_WAIT_POLICY", None)  # each level runs as it ships: libgomp's default waiting
    out = subprocess.run(cmd + ["--benchmark_format=json"], env=env, check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return json.loads(out.stdout)


def seconds(b):
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
    return b["real_time"] * scale


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alternations", type=int, default=3)
    ap.add_argument("--build", default="build")
    ap.add_argument("--no-round", action="store_true", help="kernels only")
    args = ap.parse_args()
    kernels = os.path.join(args.build, "bench_kernels")
    train = os.path.join(args.build, "bench_train_step")
    for p in [kernels] + ([] if args.no_round else [train]):
        if not os.access(p, os.X_OK):
            sys.exit(f"compare_cpu_isa.py: {p} not found (bash tools/build.sh)")
    levels = supported_levels()
    best = {}  # (benchmark, level) -> seconds
    for alt in range(args.alternations):
        for level in levels:
            results = run_json([kernels, f"--benchmark_filter={KERNELS}"], level)["benchmarks"]
            if not args.no_round:
                results += [b for b in run_json([train, f"--benchmark_filter={ROUND}"], level)["benchmarks"]
                            if b.get("aggregate_name") == "min"]
            for b in results:
                key = (b["run_name"] if "run_name" in b else b["name"], level)
                best[key] = min(best.get(key, float("inf")), seconds(b))
            print(f"alternation {alt + 1}/{args.alternations}: {level} done", file=sys.stderr)
    names = sorted({k[0] for k in best}, key=lambda n: (n.startswith("round"), n))
    ref = "avx2" if "avx2" in levels else "baseline"
    print(f"CPU: {cpu_model()}; levels {', '.join(levels)}; best of {args.alternations} alternations")
    print("benchmark".ljust(44) + "".join(f"{l:>12}" for l in levels) +
          "".join(f"{l + '/' + ref:>18}" for l in levels if l != ref))
    for n in names:
        row = n.ljust(44)
        for l in levels:
            t = best[(n, l)]
            row += f"{t * 1e3:>10.3f}ms" if t >= 1e-3 else f"{t * 1e6:>10.1f}us"
        for l in levels:
            if l != ref:
                row += f"{best[(n, l)] / best[(n, ref)]:>18.3f}"
        print(row)
    print(f"(ratios: time at the level / time at {ref}; below 1 is faster)")


if __name__ == "__main__":
    main()
