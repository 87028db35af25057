"""Prune your own Keras model at initialisation with EPSD, then self-distil it.

    python examples/prune_your_own_model.py --out=/tmp/my_epsd
    python examples/prune_your_own_model.py --npz=my_data.npz --sparsity=0.95 --epochs=30

Step 1 scores every weight of the freshly initialised model by how much DLB's
self-distillation loss depends on it after a few unrolled SGD steps and keeps
the best `1 - sparsity` (Chen et al., "EPSD", AAAI 2024); step 2 trains the
sparse model with DLB self-distillation in `model.fit`. Any built Functional or
Sequential Keras 3 model works. Writes `<out>/model.keras` (masks included; it
loads after a plain `import epsd_tf`), which `export_trained_model.py` exports.
"""

import argparse
import os

import keras
import numpy as np
from _data import write_toy_npz

import epsd_tf


def my_model(input_shape, num_classes) -> keras.Model:
    """Your architecture: anything built from Keras layers."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes)(x)  # logits
    return keras.Model(inputs, outputs, name="my_model")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--npz", help="your data (x_train, y_train, x_test, y_test); "
                        "default: a toy dataset written to --out")
    parser.add_argument("--out", default="/tmp/epsd_example", help="output directory")
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=32)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    npz = args.npz or write_toy_npz(os.path.join(args.out, "toy.npz"))

    keras.utils.set_random_seed(0)
    splits = epsd_tf.data.load("my_data", source="npz", path=npz, batch_size=args.batch_size)
    model = my_model(splits.info.image_shape, splits.info.num_classes)
    method = epsd_tf.DLB()                              # or CSKD(), PSKD(), NoDistillation()
    batches = epsd_tf.data.for_method(splits, method)   # two augmented views per example

    # Step 1: EPSD at initialisation (DLB's loss, 2 unrolled SGD steps).
    pruned, report = epsd_tf.prune_at_init(model, splits, sparsity=args.sparsity,
                                           scorer="epsd", method=method, inner_steps=2)
    masks = epsd_tf.get_masks(pruned)
    kept, total = sum(int(m.sum()) for m in masks.values()), sum(m.size for m in masks.values())
    print(f"kept {kept:,} of {total:,} prunable weights ({100 * (1 - kept / total):.1f} % "
          "pruned); per-layer densities in report['layers']")

    # Step 2: DLB self-distillation of the sparse network; masked weights stay 0.
    trainer = epsd_tf.SelfDistillationModel(pruned, method, batch_size=args.batch_size)
    trainer.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    trainer.fit(batches, epochs=args.epochs, validation_data=splits.validation, verbose=2)
    test = trainer.evaluate(splits.test, return_dict=True, verbose=0)
    weights = epsd_tf.get_prunable_weights(pruned)
    zeros = all(np.all(keras.ops.convert_to_numpy(weights[name])[mask == 0] == 0)
                for name, mask in masks.items())
    path = os.path.join(args.out, "model.keras")
    pruned.save(path)
    print(f"test accuracy {test['accuracy']:.4f}; pruned weights still zero: {zeros}; "
          f"saved {path}")


if __name__ == "__main__":
    main()
