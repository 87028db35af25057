"""Export a trained model to edge artifacts and learn which file to ship.

    python examples/prune_your_own_model.py --out=/tmp/epsd_example
    python examples/export_trained_model.py --model=/tmp/epsd_example/model.keras \
        --npz=/tmp/epsd_example/toy.npz

Writes the stripped `.keras`, a SavedModel and five TFLite variants (float32,
sparse float32, float16, int8, sparse int8), reloads each one and checks it
against the Keras model, measures size and LiteRT latency, and writes
`export_report.txt` and `MODEL_CARD.md`. The report names the file to ship:
the smallest that passes parity and loads under LiteRT's default delegate.
For a run of `epsd-run`, `epsd-export --model=runs/x/model.keras` does this
with the run's own data and metrics.
"""

import argparse
import os

import keras

import epsd_tf  # registers the mask wrapper, so the saved pruned model loads


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a trained .keras file")
    parser.add_argument("--npz", required=True, help="data: int8 calibration and parity images")
    parser.add_argument("--out", help="output directory (default: export/ beside the model)")
    parser.add_argument("--latency_runs", type=int, default=20)
    args = parser.parse_args()
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.model)), "export")

    model = keras.models.load_model(args.model)
    splits = epsd_tf.data.load("my_data", source="npz", path=args.npz, batch_size=32,
                               augment=False)
    report = epsd_tf.export.export_all(
        model, out, representative_data=splits.train, eval_batch=next(iter(splits.test)),
        overwrite=True, latency_runs=args.latency_runs,
        about={"dataset": f"{args.npz}: {splits.info.num_train} training images",
               "command": "python examples/export_trained_model.py "
                          f"--model={args.model} --npz={args.npz}"})
    for name, artifact in report["artifacts"].items():
        print(f"{name:<16}{artifact['bytes']:>12,} bytes   top-1 agreement "
              f"{artifact['parity']['top1_agreement']:.4f}")
    ship = report["ship"]
    print(f"ship: {ship['path']} ({ship['reason']}); model card: "
          f"{os.path.join(out, 'MODEL_CARD.md')}")


if __name__ == "__main__":
    main()
