#!/usr/bin/env python3
"""The bytes one EM round must move through memory, counted from the model's sizes.

Counts each weight read per GEMM, each gradient written, and the optimizer's reads and writes
of parameters, gradients and state, for the schedule the trainer runs (the generator's frozen
passes batched: one pass per E-step iteration for the n_critic D steps, a few passes for the
M-step). Activations are left out (at batch 32 they are a few MB). Divide by a measured memory
bandwidth for the time floor of a round.

usage: tools/round_bytes.py [--text 1024 --image 2048 --gf 2048 --df 1024 --embed 1024 --z 256
                             --e-iters 100 --n-critic 5 --m-iters 100 --m-passes 2
                             --bandwidth-gbs 4000]
Plain Python 3, no packages.
"""
import argparse

F = 4  # bytes per float32


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in [("text", 1024), ("image", 2048), ("gf", 2048), ("df", 1024), ("embed", 1024),
                          ("z", 256), ("e-iters", 100), ("n-critic", 5), ("m-iters", 100), ("m-passes", 2)]:
        p.add_argument("--" + name, type=int, default=default)
    p.add_argument("--bandwidth-gbs", type=float, default=0, help="report the floor at this bandwidth")
    a = p.parse_args()

    def linear(i, o):
        return (i * o + o) * F

    cond = linear(a.text, 2 * a.embed)
    gen = linear(a.embed + a.z, a.gf) + linear(a.gf, 2 * a.gf) + linear(2 * a.gf, a.image)
    g_all = cond + gen
    critic = linear(a.image + a.text, a.df) + linear(a.df, 1)
    csem = linear(a.image, a.embed)

    rmsprop = 5  # read p, g, ms; write p, ms
    adam = 7     # read p, g, m, v; write p, m, v
    d_step = critic + critic + rmsprop * critic            # forward, dW, update
    g_step = (g_all + gen + g_all                          # forward, dX (not through cond), dW
              + 2 * critic + 2 * csem                      # frozen critic and CSEM: forward and dX
              + rmsprop * g_all)
    e_iter = g_all + a.n_critic * d_step + g_step          # one generation pass for the D steps
    m_step = csem + csem + adam * csem
    round_bytes = a.e_iters * e_iter + a.m_passes * g_all + a.m_iters * m_step

    mb = 1e6
    print(f"parameters: condition+generator {g_all / mb:.1f} MB, critic {critic / mb:.1f} MB, CSEM {csem / mb:.1f} MB")
    print(f"per D step {d_step / mb:.0f} MB, per G step {g_step / mb:.0f} MB, per E-step iteration "
          f"{e_iter / mb:.0f} MB, per CSEM step {m_step / mb:.0f} MB")
    print(f"one EM round: {round_bytes / 1e9:.1f} GB")
    if a.bandwidth_gbs > 0:
        print(f"floor at {a.bandwidth_gbs:.0f} GB/s: {round_bytes / (a.bandwidth_gbs * 1e9) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
