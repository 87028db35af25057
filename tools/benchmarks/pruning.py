"""Pruning costs on ResNet-20, batch 128, measured side by side in one run.

  masked_step_ratio   masked / unmasked `model.fit` step time (target <= 1.10):
                      the same ResNet-20 wrapped by `pruning.prune_low_magnitude`
                      at 90 % random sparsity vs the plain model, same optimizer
                      (SGD nesterov 0.9, weight decay 5e-4), same compile defaults.
  scoring_ratio       EPSD scoring time / one unmasked training step, for 3 inner
                      steps, full second order (target <= 15) and first order
                      (target <= 8); graph tracing excluded (the scorer is called
                      once to warm up, then timed). Methods: `dlb` (the costliest:
                      its inner steps 1..3 forward 2B images) and `none` (ProsPr).
                      `ratio_to_method_step` divides instead by a training step
                      that pushes the method's images through the network (2B
                      for DLB, measured as a plain step on a 2B batch): the cost
                      of scoring relative to one step of the training it precedes.
  peak memory         TensorFlow's CPU allocator peak (`tf.config.experimental.
                      get_memory_info("CPU:0")`, reset before each phase) for one
                      training step and one scoring call. Process RSS is not
                      reported: the allocator keeps memory from the warm-up calls,
                      so RSS barely moves during the timed phases.

  float64_ratio       EPSD-DLB scoring (3 inner steps, full second order) with
                      `score_dtype="float64"` / the same in float32: median of
                      per-pair ratios over order-alternating pairs (tracing excluded).

Inputs are CIFAR-shaped (32x32x3, 10 classes), random, held in memory. Rounds
alternate the two sides and keep the fastest, so machine load hits both alike.

Not part of the suite (minutes per seed, real data): the kept-set overlaps of
issue 14 on Fashion-MNIST / ResNet-20 at 90/95/98 % (float32 vs float64 for
EPSD-DLB and ProsPr, and EPSD vs ProsPr in each dtype), in the study's setting
(gin/study_fmnist.gin: 8000 training images, batch 128, 3 inner steps, lr 0.1,
min_density 0.002):

  python tools/benchmarks/pruning.py --overlap --seeds=0,1

The float64 ratio alone: `python tools/benchmarks/pruning.py --float64`.
"""

from __future__ import annotations

import statistics
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from epsd_tf import models, pruning
from epsd_tf.pruning import masks as masks_lib
from epsd_tf.pruning import stability

BATCH_SIZE = 128
IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 10
SPARSITY = 0.9
TARGETS = {"masked_step_ratio": 1.10, "full_second_order": 15.0, "first_order": 8.0}


def _measure_memory(fn) -> dict:
    """Peak of TensorFlow's CPU allocator during `fn()`, in MB."""
    tf.config.experimental.reset_memory_stats("CPU:0")
    fn()
    return {"tf_cpu_peak_mb": tf.config.experimental.get_memory_info("CPU:0")["peak"] / 2**20}


def _data(steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = steps * BATCH_SIZE
    images = rng.normal(size=(n, *IMAGE_SHAPE)).astype("float32")
    views = rng.normal(size=(n, *IMAGE_SHAPE)).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, n).astype("int32")
    return images, views, labels


def _compile(model):
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True,
                                                 weight_decay=5e-4),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _step_seconds(model, dataset, steps: int) -> float:
    start = time.perf_counter()
    model.fit(dataset, epochs=1, verbose=0)
    return (time.perf_counter() - start) / steps


def _scoring_seconds(scorer_fn) -> float:
    start = time.perf_counter()
    scorer_fn()
    return time.perf_counter() - start


def run(quick: bool = False) -> dict:
    """Runs the pruning benchmark; returns ratios, times (s) and memory (MB)."""
    steps = 4 if quick else 10
    rounds = 2 if quick else 3
    images, views, labels = _data(steps)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(
        BATCH_SIZE, drop_remainder=True).cache()

    dense = _compile(models.build("resnet20", IMAGE_SHAPE, NUM_CLASSES))
    rng = np.random.default_rng(0)
    masks = {name: (rng.random(v.shape) >= SPARSITY).astype("float32")
             for name, v in pruning.get_prunable_weights(dense).items()}
    masked = _compile(pruning.prune_low_magnitude(dense, masks=masks))
    for model in (dense, masked):  # warm up: trace and compile both train steps
        model.fit(dataset.take(1), epochs=1, verbose=0)
    dense_times, masked_times = [], []
    for _ in range(rounds):
        dense_times.append(_step_seconds(dense, dataset, steps))
        masked_times.append(_step_seconds(masked, dataset, steps))
    train_step = min(dense_times)
    double_batches = tf.data.Dataset.from_tensor_slices(
        (np.concatenate([images, views]), np.concatenate([labels, labels]))).batch(
        2 * BATCH_SIZE, drop_remainder=True).cache()
    dense.fit(double_batches.take(1), epochs=1, verbose=0)  # trace the 2B step
    double_step = min(_step_seconds(dense, double_batches, steps) for _ in range(rounds))
    result = {
        "model": "resnet20", "batch_size": BATCH_SIZE, "image_shape": list(IMAGE_SHAPE),
        "train_step_seconds": train_step, "masked_step_seconds": min(masked_times),
        "masked_step_ratio": min(masked_times) / train_step,
        "targets": TARGETS, "scoring": {},
    }
    one_batch = dataset.take(1)
    result["memory_train_step"] = _measure_memory(
        lambda: dense.fit(one_batch, epochs=1, verbose=0))

    # Scoring: a fresh (unmasked) ResNet-20, 4 batches of the method's kind.
    model = models.build("resnet20", IMAGE_SHAPE, NUM_CLASSES)
    score_batches = {
        "dlb": [({"image": images[i * BATCH_SIZE:(i + 1) * BATCH_SIZE],
                  "image_view1": views[i * BATCH_SIZE:(i + 1) * BATCH_SIZE]},
                 labels[i * BATCH_SIZE:(i + 1) * BATCH_SIZE]) for i in range(4)],
        "none": [(images[i * BATCH_SIZE:(i + 1) * BATCH_SIZE],
                  labels[i * BATCH_SIZE:(i + 1) * BATCH_SIZE]) for i in range(4)],
    }
    cases = [("dlb", False), ("dlb", True)] if quick else [
        ("dlb", False), ("dlb", True), ("none", False), ("none", True)]
    for method, first_order in cases:
        scorer_fn = pruning.make_scorer(model, score_batches[method], "epsd", method=method,
                                        inner_steps=3, first_order=first_order)
        trace_start = time.perf_counter()
        scorer_fn()  # trace + first run
        first_call = time.perf_counter() - trace_start
        seconds = min(_scoring_seconds(scorer_fn) for _ in range(max(1, rounds - 1)))
        # A training step timed right next to the scoring call (load drifts).
        dense_times.append(_step_seconds(dense, dataset, steps))
        train_step = min(dense_times)
        key = f"{method}_{'first_order' if first_order else 'full_second_order'}"
        result["scoring"][key] = {
            "seconds": seconds, "first_call_seconds_incl_trace": first_call,
            "ratio_to_train_step": seconds / train_step,
            "target": TARGETS["first_order" if first_order else "full_second_order"],
            "memory": _measure_memory(scorer_fn),
        }
    result["train_step_seconds"] = train_step
    result["train_step_2b_seconds"] = double_step
    for key, entry in result["scoring"].items():
        entry["ratio_to_train_step"] = entry["seconds"] / train_step
        entry["ratio_to_method_step"] = entry["seconds"] / (
            double_step if key.startswith("dlb") else train_step)
    result["masked_step_ratio"] = result["masked_step_seconds"] / train_step
    result["score_dtype"] = float64_cost(model, score_batches["dlb"], pairs=2 if quick else 3)
    return result


def float64_cost(model, score_batches, pairs: int = 3) -> dict:
    """float64 / float32 EPSD-DLB scoring time (full second order), paired."""
    scorer_fns = {dtype: pruning.make_scorer(model, score_batches, "epsd", method="dlb",
                                             inner_steps=3, score_dtype=dtype)
                  for dtype in ("float32", "float64")}
    for scorer_fn in scorer_fns.values():
        scorer_fn()  # trace + first run
    seconds = {"float32": [], "float64": []}
    for pair in range(pairs):
        order = ("float32", "float64") if pair % 2 == 0 else ("float64", "float32")
        for dtype in order:
            seconds[dtype].append(_scoring_seconds(scorer_fns[dtype]))
    ratios = [b / a for a, b in zip(seconds["float32"], seconds["float64"])]
    return {"float32_seconds": seconds["float32"], "float64_seconds": seconds["float64"],
            "float64_ratio": statistics.median(ratios), "pair_ratios": ratios,
            "memory_float64": _measure_memory(scorer_fns["float64"])}


def kept_set_overlaps(seeds=(0, 1), sparsities=(0.9, 0.95, 0.98)) -> dict:
    """Issue 14's table: how much of each kept set is float32 round-off.

    For each seed, as `tools/run.py --gin_file=gin/study_fmnist.gin` scores
    (`run.seed` = seed): ResNet-20 built after `keras.utils.set_random_seed(seed)`,
    DLB's scoring batches `data.for_method(splits, DLB, seed=seed)`; EPSD (DLB
    loss) and ProsPr (CE, on view 0) scores in float32 and float64; masks at
    each sparsity with `min_density=0.002`. Overlaps are `|kept_a ∩ kept_b| /
    |kept|` (`pruning.stability.kept_overlap`), global and per layer.
    """
    from epsd_tf import data, distill
    splits = data.load("fashion_mnist", batch_size=128, max_train_examples=8000, seed=0)
    method = distill.DLB()
    rows = []
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        model = models.build("resnet20", splits.info.image_shape, splits.info.num_classes)
        view = data.for_method(splits, method, seed=seed)
        scores = {}
        for scorer in ("epsd", "prospr"):
            settings = pruning.scorers.scorer_settings(
                scorer, {"method": method, "inner_steps": 3, "inner_lr": 0.1})
            taken = list(view.take(pruning.scorers.batches_needed(scorer, settings)))
            for dtype in ("float32", "float64"):
                start = time.perf_counter()
                scores[scorer, dtype] = pruning.score(model, taken, scorer, score_dtype=dtype,
                                                      **settings)
                print(f"seed {seed} {scorer} {dtype}: {time.perf_counter() - start:.1f} s",
                      file=sys.stderr)
        for sparsity in sparsities:
            masks = {key: masks_lib.masks_from_scores(value, sparsity, min_density=0.002)
                     for key, value in scores.items()}

            def overlap(a, b):
                return stability.kept_overlap(masks[a], masks[b])
            row = {"seed": seed, "sparsity": sparsity}
            for scorer in ("epsd", "prospr"):
                result = overlap((scorer, "float32"), (scorer, "float64"))
                row[f"{scorer}_32_vs_64"] = result["global"]
                row[f"{scorer}_32_vs_64_layers"] = result["layers"]
            for dtype in ("float32", "float64"):
                row[f"epsd_vs_prospr_{dtype[-2:]}"] = overlap(("epsd", dtype),
                                                              ("prospr", dtype))["global"]
            rows.append(row)
            print({k: round(v, 4) for k, v in row.items() if isinstance(v, float)},
                  file=sys.stderr)
    return {"setting": "fashion_mnist resnet20, 8000 train images, batch 128, DLB (T=3), "
                       "3 inner steps, inner_lr 0.1, full second order, min_density 0.002",
            "rows": rows}


if __name__ == "__main__":
    import json
    if [a for a in sys.argv[1:] if a.split("=", 1)[0] not in ("--float64", "--overlap",
                                                               "--seeds", "--quick")]:
        sys.exit(f"unknown arguments {sys.argv[1:]}: this script takes --float64, --overlap "
                 "[--seeds=0,1] or --quick")
    if "--float64" in sys.argv:  # only the float64 / float32 scoring ratio
        images, views, labels = _data(4)
        output = float64_cost(
            models.build("resnet20", IMAGE_SHAPE, NUM_CLASSES),
            [({"image": images[i * BATCH_SIZE:(i + 1) * BATCH_SIZE],
               "image_view1": views[i * BATCH_SIZE:(i + 1) * BATCH_SIZE]},
              labels[i * BATCH_SIZE:(i + 1) * BATCH_SIZE]) for i in range(4)])
    elif "--overlap" in sys.argv:
        seeds = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--seeds=")), "0")
        output = kept_set_overlaps(tuple(int(s) for s in seeds.split(",")))
    else:
        output = run(quick="--quick" in sys.argv)
    sys.stdout.write(json.dumps(output, indent=2) + "\n")
