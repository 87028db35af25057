"""Compare pruning-at-initialisation scorers on your data, same init, same training.

    python examples/compare_scorers.py
    python examples/compare_scorers.py --npz=my_data.npz --scorers=epsd,prospr,snip,random \
        --sparsity=0.95 --epochs=20

Every scorer prunes the same initial weights of the model in
`prune_your_own_model.py` to the same sparsity; each sparse network is then
trained the same way (DLB self-distillation) and tested. EPSD scores with the
SD loss (Chen et al., AAAI 2024); ProsPr (Alizadeh et al., ICLR 2022) with
cross-entropy; SNIP (Lee et al., ICLR 2019) by |g ⊙ θ|; magnitude and random
are the baselines. For the paper-style grid with seeds use `tools/sweep.py`.
"""

import argparse
import os
import time

import keras
from _data import write_toy_npz
from prune_your_own_model import my_model

import epsd_tf


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--npz", help="your data; default: a toy dataset written to --out")
    parser.add_argument("--out", default="/tmp/epsd_scorers", help="output directory")
    parser.add_argument("--scorers", default="epsd,snip,magnitude,random",
                        help=f"comma-separated, from {sorted(epsd_tf.pruning.SCORERS)}")
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=32)
    args = parser.parse_args()
    scorers = args.scorers.split(",")
    unknown = sorted(set(scorers) - set(epsd_tf.pruning.SCORERS))
    if unknown:
        parser.error(f"unknown scorers {unknown}; valid: {sorted(epsd_tf.pruning.SCORERS)}")
    os.makedirs(args.out, exist_ok=True)
    npz = args.npz or write_toy_npz(os.path.join(args.out, "toy.npz"))
    splits = epsd_tf.data.load("my_data", source="npz", path=npz, batch_size=args.batch_size)
    method = epsd_tf.DLB()
    batches = epsd_tf.data.for_method(splits, method)

    rows = []
    for scorer in scorers:
        keras.utils.set_random_seed(0)  # the same initial weights for every scorer
        model = my_model(splits.info.image_shape, splits.info.num_classes)
        start = time.perf_counter()
        pruned, _ = epsd_tf.prune_at_init(model, splits, sparsity=args.sparsity,
                                          scorer=scorer, method=method, inner_steps=2)
        seconds = time.perf_counter() - start
        trainer = epsd_tf.SelfDistillationModel(pruned, method, batch_size=args.batch_size)
        trainer.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
        trainer.fit(batches, epochs=args.epochs, verbose=0)
        test = trainer.evaluate(splits.test, return_dict=True, verbose=0)
        rows.append((scorer, test["accuracy"], test["nll"], seconds))

    print(f"{'scorer':<12}{'test acc':>10}{'test NLL':>10}{'scoring s':>11}"
          f"   ({100 * args.sparsity:.0f} % sparsity, {args.epochs} epochs of DLB)")
    for scorer, accuracy, nll, seconds in rows:
        print(f"{scorer:<12}{accuracy:>10.4f}{nll:>10.4f}{seconds:>11.1f}")


if __name__ == "__main__":
    main()
