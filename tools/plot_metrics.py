#!/usr/bin/python3
"""Plots a training run's metrics.jsonl to a PNG with two panels: the round's mean losses
(L_D, L_G, L_C, KL) and the retrieval metrics after each round (Precision@K, mAP@K, Top-1).

Usage: tools/plot_metrics.py RUN_DIR [--out FILE.png] [--title TEXT]
  RUN_DIR is a run's output_dir (holding metrics.jsonl) or the metrics.jsonl file itself;
  the PNG goes to RUN_DIR/metrics.png unless --out says otherwise.

Needs Debian's python3-matplotlib for /usr/bin/python3:  apt-get install -y python3-matplotlib
"""
import argparse
import json
import math
import os
import sys

LOSSES = [  # key, label; L_G sits on its own axis: its scale is unlike the others'
    ("loss_d", "L_D (critic)"),
    ("loss_csem", "L_C (CSEM)"),
    ("loss_kl", "KL"),
]
GENERATOR_LOSS = ("loss_g", "L_G (generator)")
METRICS = [("prec_at_k", "Precision@{k}"), ("map_at_k", "mAP@{k}"), ("top1", "Top-1")]
REQUIRED = ["round", "k"] + [k for k, _ in LOSSES + [GENERATOR_LOSS] + METRICS]


def fail(message):
    sys.stderr.write("plot_metrics.py: " + message + "\n")
    sys.exit(1)


def read_rounds(path):
    """One record per round, in round order; a round logged twice keeps its last line."""
    by_round = {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except OSError as e:
        fail("%s: cannot read: %s" % (path, e.strerror))
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            fail("%s:%d: not a JSON line: %s" % (path, number, e))
        if not isinstance(record, dict):
            fail("%s:%d: expected a JSON object" % (path, number))
        for key in REQUIRED:
            value = record.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                fail("%s:%d: '%s' is missing or not a number" % (path, number, key))
        by_round[int(record["round"])] = record
    if not by_round:
        fail("%s: no rounds logged yet" % path)
    return [by_round[r] for r in sorted(by_round)]


def main():
    parser = argparse.ArgumentParser(
        description="Plot the losses and retrieval metrics of a run's metrics.jsonl.")
    parser.add_argument("run", help="a run folder holding metrics.jsonl, or the file itself")
    parser.add_argument("--out", help="PNG to write (default: RUN/metrics.png)")
    parser.add_argument("--title", help="figure title (default: the run folder's name)")
    args = parser.parse_args()

    path = args.run
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.jsonl")
    run_dir = os.path.dirname(os.path.abspath(path))
    out = args.out or os.path.join(run_dir, "metrics.png")
    rounds = read_rounds(path)

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        fail("matplotlib is not installed for %s; install Debian's package: "
             "apt-get install -y python3-matplotlib" % sys.executable)

    x = [r["round"] for r in rounds]
    k = int(rounds[-1]["k"])
    marker = "o" if len(rounds) <= 40 else None
    fig, (ax_loss, ax_metric) = plt.subplots(2, 1, figsize=(9, 8), sharex=True)
    fig.suptitle(args.title or os.path.basename(run_dir))

    lines = []
    for key, label in LOSSES:
        lines += ax_loss.plot(x, [r[key] for r in rounds], marker=marker, markersize=3, label=label)
    ax_loss.set_ylabel("mean loss per round: L_D, L_C, KL")
    ax_loss.axhline(0.0, color="0.8", linewidth=0.8, zorder=0)
    ax_g = ax_loss.twinx()
    key, label = GENERATOR_LOSS
    lines += ax_g.plot(x, [r[key] for r in rounds], color="black", linestyle="--", marker=marker,
                       markersize=3, label=label)
    ax_g.set_ylabel(label)
    # Legends sit in a row above each panel, clear of the curves.
    ax_loss.legend(lines, [l.get_label() for l in lines], loc="lower left",
                   bbox_to_anchor=(0.0, 1.01), ncol=4, frameon=False, fontsize="small")
    ax_loss.grid(True, alpha=0.3)

    for key, label in METRICS:
        ax_metric.plot(x, [r[key] for r in rounds], marker=marker, markersize=3,
                       label=label.format(k=k))
    best = max(rounds, key=lambda r: r["prec_at_k"])
    ax_metric.plot([best["round"]], [best["prec_at_k"]], marker="*", markersize=12, color="gold",
                   markeredgecolor="black", linestyle="none",
                   label="best P@%d %.3f (round %d)" % (k, best["prec_at_k"], best["round"]))
    top = max(max(r[key] for r in rounds) for key, _ in METRICS)
    ax_metric.set_ylim(0.0, min(1.02, max(0.05, top * 1.1)) if math.isfinite(top) else 1.0)
    ax_metric.set_xlabel("round")
    ax_metric.set_ylabel("retrieval on the unseen classes")
    ax_metric.legend(loc="lower left", bbox_to_anchor=(0.0, 1.01), ncol=4, frameon=False,
                     fontsize="small")
    ax_metric.grid(True, alpha=0.3)
    if len(x) < 15:
        ax_metric.set_xticks(x)

    fig.tight_layout()
    try:
        fig.savefig(out, dpi=120)
    except OSError as e:
        fail("%s: cannot write: %s" % (out, e.strerror))
    print("wrote %s (%d rounds)" % (out, len(rounds)))


if __name__ == "__main__":
    main()
