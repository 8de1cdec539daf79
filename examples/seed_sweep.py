#!/usr/bin/env python3
"""Trains the same configuration with 5 seeds and prints the best Precision@50 of each, their
mean and standard deviation.

    python examples/seed_sweep.py [--config configs/demo.json] [--rounds 10] [--seeds 0 1 2 3 4]
"""
import argparse
import os
import statistics

import zscrgan

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=os.path.join(HERE, "..", "configs", "demo.json"))
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--out", default="runs/seed_sweep")
    p.add_argument("--device", default="auto")
    p.add_argument("--overwrite", action="store_true", help="replace earlier runs in --out")
    args = p.parse_args()

    best = []
    for seed in args.seeds:
        r = zscrgan.train(args.config, output_dir=os.path.join(args.out, f"seed{seed}"),
                          device=args.device, quiet=True, overwrite=args.overwrite,
                          overrides=[f"seed={seed}", f"rounds={args.rounds}"])
        best.append(r.best_score)
        print(f"seed {seed}: best Precision@50 {r.best_score:.4f} (round {r.best_round}); "
              f"last round {r.history[-1]['prec_at_k']:.4f}", flush=True)
    sd = statistics.stdev(best) if len(best) > 1 else 0.0
    print(f"Precision@50 over {len(best)} seeds: mean {statistics.mean(best):.4f}, "
          f"standard deviation {sd:.4f}")


if __name__ == "__main__":
    main()
