"""Export benchmark: dense vs sparse TFLite size and latency; PQAT int8 accuracy.

  resnet20      a ResNet-20 trained on Fashion-MNIST (28x28x1), magnitude-pruned
                to 90 % and fine-tuned with fixed masks, exported with
                `export_all` (every format, parity-checked): bytes of each file,
                `float32_sparse / float32` size ratio (target <= 0.25), the
                sparse int8 size, LiteRT latency (XNNPACK on/off, 1 and all
                threads, median of `runs`) dense vs sparse, the XNNPACK verdict.
  pqat          TF-MOT pruning-preserving QAT of that network (subprocess):
                int8 TFLite test accuracy against the float sparse model's
                (target: within 1 point) and the sparsity kept.
  mobilenet_v2  MobileNetV2 (ImageNet stem, 97x97x3 so every stride-2 SAME
                convolution pads 1 on each side, 10 classes) at 90 % random
                sparsity: float32 vs float32_sparse size and latency, and which
                layers XNNPACK's sparse inference can take.

Run: `python tools/bench.py --suite=export` (add `--quick` for a fast look:
fewer examples, epochs and latency runs).
"""

from __future__ import annotations

import os
import tempfile

import keras
import numpy as np

from epsd_tf import data, export, models, pruning
from epsd_tf.export import tfmot_adapter

SPARSITY = 0.9
TARGETS = {"float32_sparse_over_dense_bytes": 0.25, "pqat_accuracy_drop_points": 1.0}


def _train_sparse_resnet20(splits, quick: bool) -> keras.Model:
    """Dense epoch, 90 % global magnitude pruning, fine-tune with fixed masks."""
    keras.utils.set_random_seed(0)
    model = models.build("resnet20", splits.info.image_shape, splits.info.num_classes)
    steps = 40 if quick else None
    train = splits.train.take(steps) if steps else splits.train

    def compile_(m):
        m.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])

    compile_(model)
    model.fit(train, epochs=1, verbose=0)
    # Magnitude scores of the trained weights: prune_at_init keeps m * theta
    # with theta = the weights it is given.
    pruned, _ = pruning.prune_at_init(model, None, SPARSITY, scorer="magnitude")
    compile_(pruned)
    pruned.fit(train, epochs=1, verbose=0)
    return pruning.strip_masks(pruned)


def _latency_summary(report: dict, pair: tuple) -> dict:
    sparse, dense = pair
    out = {}
    for key in ("xnnpack_1t", "xnnpack_allt", "builtin_1t", "builtin_allt"):
        for name in pair:
            entry = report["artifacts"][name].get("latency", {}).get(key, {})
            out[f"{name}_{key}_ms"] = entry.get("median_ms", entry.get("error"))
    out.update({k: v for k, v in report["comparisons"].get(f"{sparse}_vs_{dense}", {}).items()})
    return out


def _resnet20(workdir: str, quick: bool) -> tuple:
    splits = data.load("fashion_mnist", batch_size=128, augment=False,
                       validation_fraction=0.0)
    model = _train_sparse_resnet20(splits, quick)
    test_images, test_labels = [], []
    for images, labels in splits.test:
        test_images.append(images.numpy())
        test_labels.append(labels.numpy())
    x_test, y_test = np.concatenate(test_images), np.concatenate(test_labels)
    float_accuracy = float(np.mean(np.argmax(model.predict(x_test, verbose=0), -1) == y_test))
    report = export.export_all(
        model, os.path.join(workdir, "resnet20"), formats=export.FORMATS,
        representative_data=splits.train, eval_batch=(x_test[:1000], y_test[:1000]),
        latency_runs=10 if quick else 100, latency_warmup=10)
    artifacts = report["artifacts"]
    result = {
        "float_sparse_test_accuracy": float_accuracy,
        "sparsity": report["sparsity"]["sparsity"],
        "bytes": {name: a["bytes"] for name, a in artifacts.items()},
        "gzip_bytes": {name: a["gzip_bytes"] for name, a in artifacts.items()},
        "float32_sparse_over_dense_bytes": (artifacts["float32_sparse"]["bytes"]
                                            / artifacts["float32"]["bytes"]),
        "int8_sparse_over_int8_bytes": (artifacts["int8_sparse"]["bytes"]
                                        / artifacts["int8"]["bytes"]),
        "parity": {name: a["parity"] for name, a in artifacts.items()},
        "float_latency": _latency_summary(report, ("float32_sparse", "float32")),
        "int8_latency": _latency_summary(report, ("int8_sparse", "int8")),
        "xnnpack_sparse": artifacts["float32_sparse"]["tflite"]["xnnpack_sparse"]["summary"],
        "xnnpack_errors": {n: a["xnnpack_error"] for n, a in artifacts.items()
                           if "xnnpack_error" in a},
        "report_table": os.path.join(workdir, "resnet20", "export_report.txt"),
    }
    return model, splits, (x_test, y_test), result


def _pqat(model, splits, test, workdir: str, quick: bool) -> dict:
    result = tfmot_adapter.run_pqat(
        model, os.path.join(workdir, "pqat"), splits.train, test,
        epochs=1, batch_size=128, learning_rate=1e-4,
        max_train_examples=2000 if quick else 20000)
    result["accuracy_drop_points"] = 100 * (result["float_accuracy"] - result["tflite_accuracy"])
    return result


def _mobilenet_v2(workdir: str, quick: bool) -> dict:
    keras.utils.set_random_seed(0)
    model = models.build("mobilenet_v2", (97, 97, 3), 10, stem="imagenet")
    rng = np.random.default_rng(0)
    masks = {}
    for name, variable in pruning.get_prunable_weights(model).items():
        masks[name] = (rng.random(variable.shape) >= SPARSITY).astype(np.float32)
        variable.assign(keras.ops.convert_to_numpy(variable) * masks[name])
    images = rng.standard_normal((64, 97, 97, 3)).astype(np.float32)
    report = export.export_all(
        model, os.path.join(workdir, "mobilenet_v2"), formats=("float32", "float32_sparse"),
        eval_batch=images, latency_runs=10 if quick else 100, latency_warmup=10)
    verdict = report["artifacts"]["float32_sparse"]["tflite"]["xnnpack_sparse"]
    return {"bytes": {n: a["bytes"] for n, a in report["artifacts"].items()},
            "float_latency": _latency_summary(report, ("float32_sparse", "float32")),
            "xnnpack_sparse": verdict["summary"],
            "xnnpack_eligible_layers": len(verdict["eligible_layers"]),
            "xnnpack_blocking_layers": verdict["ineligible_layers"][:10],
            "report_table": os.path.join(workdir, "mobilenet_v2", "export_report.txt")}


def run(quick: bool = False) -> dict:
    """Runs the three measurements; returns numbers and target checks."""
    workdir = tempfile.mkdtemp(prefix="bench_export_")
    model, splits, test, resnet = _resnet20(workdir, quick)
    pqat = _pqat(model, splits, test, workdir, quick)
    mobilenet = _mobilenet_v2(workdir, quick)
    return {
        "workdir": workdir,
        "resnet20": resnet,
        "pqat": pqat,
        "mobilenet_v2": mobilenet,
        "targets": TARGETS,
        "met": {
            "float32_sparse_over_dense_bytes":
                resnet["float32_sparse_over_dense_bytes"] <= TARGETS["float32_sparse_over_dense_bytes"],
            "pqat_accuracy_drop_points":
                pqat["accuracy_drop_points"] <= TARGETS["pqat_accuracy_drop_points"],
        },
    }
