#!/usr/bin/env python3
"""Trains on the embedded synthetic dataset handed over as numpy arrays, logs every round
through on_round (to TensorBoard when a SummaryWriter is installed, printed always), then
retrieves the top images for a few unseen-class texts.

    pip install .            # after bash tools/install_deps.sh
    python examples/train_and_retrieve.py [--rounds 30] [--out runs/example] [--device auto]
"""
import argparse
import os

import numpy as np

import zscrgan

HERE = os.path.dirname(os.path.abspath(__file__))


def summary_writer(logdir):
    """A TensorBoard SummaryWriter when one is installed (torch's or tensorboardX's)."""
    for module in ("torch.utils.tensorboard", "tensorboardX"):
        try:
            return __import__(module, fromlist=["SummaryWriter"]).SummaryWriter(logdir)
        except ImportError:
            continue
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=os.path.join(HERE, "..", "configs", "demo.json"))
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--out", default="runs/example")
    p.add_argument("--device", default="auto")
    p.add_argument("--overwrite", action="store_true", help="replace earlier runs in --out")
    args = p.parse_args()

    # Arrays as any program would hold them: here the synthetic dataset's, as numpy copies.
    synthetic = zscrgan.Dataset.synthetic()
    image_features = np.array(synthetic.image_features)
    image_labels = np.array(synthetic.image_labels)
    text_features = np.array(synthetic.text_features)
    text_labels = np.array(synthetic.text_labels)
    data = zscrgan.Dataset.from_arrays(image_features, image_labels, text_features, text_labels,
                                       synthetic.train_classes, synthetic.test_classes,
                                       name="synthetic-arrays")
    print(data)

    writer = summary_writer(os.path.join(args.out, "tensorboard"))
    print("TensorBoard:", os.path.join(args.out, "tensorboard") if writer else
          "not installed (pip install tensorboard torch, or tensorboardX); printing only")

    def on_round(m):
        k = m["k"]
        print(f"round {m['round']:3d}  Precision@{k} {m['prec_at_k']:.4f}  mAP@{k} "
              f"{m['map_at_k']:.4f}  top1 {m['top1']:.4f}  ({m['seconds']:.2f} s)", flush=True)
        if writer:
            for key in ("prec_at_k", "map_at_k", "top1", "loss_d", "loss_g", "loss_csem",
                        "loss_kl"):
                writer.add_scalar(key, m[key], m["round"])
            writer.flush()

    result = zscrgan.train(args.config, dataset=data, output_dir=args.out, device=args.device,
                           on_round=on_round, overrides=[f"rounds={args.rounds}"], quiet=True, overwrite=args.overwrite)
    if writer:
        writer.close()
    print(f"best Precision@50 {result.best_score:.4f} at round {result.best_round}: "
          f"{result.best_checkpoint}")

    # Retrieval: the first text of three unseen classes against every image.
    model = zscrgan.load(result.best_checkpoint, device=args.device)
    gallery = np.isin(image_labels, synthetic.test_classes)
    gallery_rows = np.flatnonzero(gallery)
    queries = [int(np.flatnonzero(text_labels == c)[0]) for c in synthetic.test_classes[:3]]
    indices, scores = model.retrieve(text_features[queries], image_features[gallery], k=10,
                                     seed=model.seed)
    for q, idx, sc in zip(queries, indices, scores):
        labels = image_labels[gallery_rows[idx]]
        hits = int((labels == text_labels[q]).sum())
        print(f"text {q} (class {text_labels[q]}): {hits}/10 of the top 10 images are of its "
              f"class; classes {labels.tolist()}, best score {sc[0]:.3f}")


if __name__ == "__main__":
    main()
