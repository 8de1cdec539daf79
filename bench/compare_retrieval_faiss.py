#!/usr/bin/env python3
"""Top-k cosine retrieval: ours (bench_retrieval's file mode) against FAISS IndexFlatIP.

Both sides get the same float32 gallery and queries (random normal, seeded), the same thread
count and OMP_WAIT_POLICY=PASSIVE; the sides alternate --alternations times and each keeps its
best time. FAISS searches L2-normalised vectors with IndexFlatIP (exact inner product = cosine);
its time is the search alone, and separately normalisation + add + search, since ours includes
normalising the gallery. Then the lists are compared: for each query the two top-k lists must
hold the same gallery rows, except where a row's cosine lies within --tie-tol of the k-th
score (a near-tie that GEMM rounding may order either way).

Needs: numpy and faiss-cpu (PyPI), e.g. .venv/bin/python -m pip install faiss-cpu numpy.
Usage: .venv/bin/python bench/compare_retrieval_faiss.py [--gallery-rows 1000000] [--dim 1024]
       [--queries 1000] [--k 50] [--alternations 2] [--threads N] [--bench build/bench_retrieval]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

try:
    import numpy as np
    import faiss
except ImportError as e:
    sys.exit("error: %s (install: %s -m pip install faiss-cpu numpy)" % (e, sys.executable))


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def random_rows(rng, rows, dim, block=65536):
    out = np.empty((rows, dim), dtype=np.float32)
    for r0 in range(0, rows, block):
        out[r0:r0 + block] = rng.standard_normal((min(block, rows - r0), dim), dtype=np.float32)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gallery-rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--alternations", type=int, default=2)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--bench", default="build/bench_retrieval")
    ap.add_argument("--tie-tol", type=float, default=1e-5)
    ap.add_argument("--tmp", default=None, help="folder for the .npy inputs (default: a temp folder)")
    a = ap.parse_args()
    for name in ("gallery_rows", "dim", "queries", "k", "alternations", "threads"):
        if getattr(a, name) < 1:
            ap.error("--%s must be >= 1" % name.replace("_", "-"))
    if a.k > a.gallery_rows:
        ap.error("--k must not exceed --gallery-rows")
    if not os.access(a.bench, os.X_OK):
        sys.exit("error: %s is missing or not executable (build it: cmake --build build --target bench_retrieval)" % a.bench)

    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), OMP_WAIT_POLICY="PASSIVE")
    os.environ.update(OMP_WAIT_POLICY="PASSIVE")
    faiss.omp_set_num_threads(a.threads)
    print("CPU: %s; %d threads; gallery %d x %d, %d queries, top-%d; faiss %s" %
          (cpu_model(), a.threads, a.gallery_rows, a.dim, a.queries, a.k, faiss.__version__),
          flush=True)

    with tempfile.TemporaryDirectory(dir=a.tmp) as tmp:
        rng = np.random.default_rng(0)
        queries = random_rows(rng, a.queries, a.dim)
        gallery = random_rows(rng, a.gallery_rows, a.dim)
        q_path, g_path, i_path = (os.path.join(tmp, n) for n in ("q.npy", "g.npy", "ours_index.npy"))
        np.save(q_path, queries)
        np.save(g_path, gallery)

        # FAISS's index holds the normalised gallery; the raw copy is dropped to save memory.
        t0 = time.perf_counter()
        g_unit = gallery
        faiss.normalize_L2(g_unit)  # in place
        index = faiss.IndexFlatIP(a.dim)
        index.add(g_unit)
        prep_s = time.perf_counter() - t0
        del gallery, g_unit
        q_unit = queries.copy()
        faiss.normalize_L2(q_unit)

        ours_best = faiss_best = float("inf")
        for alt in range(1, a.alternations + 1):
            out = subprocess.run([a.bench, "--queries", q_path, "--gallery", g_path, "--k", str(a.k),
                                  "--out-index", i_path], env=env, capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit("error: %s failed: %s" % (a.bench, out.stderr.strip()))
            ours = json.loads(out.stdout.strip().splitlines()[-1])["seconds_best"]
            ours_best = min(ours_best, ours)
            t0 = time.perf_counter()
            scores, faiss_index = index.search(q_unit, a.k)
            t = time.perf_counter() - t0
            faiss_best = min(faiss_best, t)
            print("[%d/%d] ours %.3f s, FAISS search %.3f s" % (alt, a.alternations, ours, t), flush=True)

        ours_index = np.load(i_path).reshape(a.queries, a.k)
        # Compare as sets up to near-ties: a row in one list and not in the other must score
        # within tie_tol of that query's k-th score (by FAISS's scores, recomputed for ours).
        mismatched_queries = 0
        worst_gap = 0.0
        for qi in range(a.queries):
            ours_set, theirs_set = set(ours_index[qi].tolist()), set(faiss_index[qi].tolist())
            if ours_set == theirs_set:
                continue
            kth = float(scores[qi, -1])
            diff = sorted((ours_set ^ theirs_set) - {-1})
            vecs = index.reconstruct_batch(np.array(diff, dtype=np.int64))
            gaps = np.abs(vecs @ q_unit[qi] - kth)
            worst_gap = max(worst_gap, float(gaps.max()))
            if gaps.max() > a.tie_tol:
                mismatched_queries += 1
        same_order = int((ours_index == faiss_index).all(axis=1).sum())

    print("CPU: %s" % cpu_model())
    print("top-%d cosine, %d x %d gallery, %d queries, %d threads (best of %d, alternating):" %
          (a.k, a.gallery_rows, a.dim, a.queries, a.threads, a.alternations))
    print("  ours (normalisation included) %8.3f s" % ours_best)
    print("  FAISS IndexFlatIP search      %8.3f s   (+ %.3f s normalise and add = %.3f s)" %
          (faiss_best, prep_s, faiss_best + prep_s))
    print("  speed-up vs FAISS search %.2fx, vs FAISS normalise+add+search %.2fx" %
          (faiss_best / ours_best, (faiss_best + prep_s) / ours_best))
    print("  lists: %d of %d queries identical in order; %d differ beyond near-ties (tol %g; "
          "largest gap of a differing row to the k-th score %.2e)" %
          (same_order, a.queries, mismatched_queries, a.tie_tol, worst_gap))
    return 1 if mismatched_queries else 0


if __name__ == "__main__":
    sys.exit(main())
