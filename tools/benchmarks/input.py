"""The TF-free input path against tf.data, side by side (issue 11).

DLB batches (two augmented views per example, batch 128) of Fashion-MNIST
(28×28×1, pad 2 + crop) and of CIFAR-shaped synthetic data (32×32×3, pad 4 +
crop + flip), from the same in-memory arrays through both pipelines of
`data.load`: "numpy" (numpy_augment.py / array_batches.py) and "tf" (tf.data,
AUTOTUNE parallelism). The numpy path is timed in one thread (the rate of one
worker) and with `workers` threads building batches concurrently, as Keras'
PyDataset enqueuer does during `fit`. Rounds alternate the order of the two
sides; every figure is a median over rounds, ratios are medians of per-round
ratios. Examples (not views) per second.
"""

import os
import statistics
import time
from concurrent import futures

from epsd_tf import backends, data

BATCH_SIZE = 128
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def _numpy_rate(batches, num_batches: int, workers: int) -> float:
    indices = [i % len(batches) for i in range(num_batches)]
    start = time.perf_counter()
    if workers == 1:
        for i in indices:
            batches[i]
    else:
        with futures.ThreadPoolExecutor(workers) as pool:
            for _ in pool.map(batches.__getitem__, indices):
                pass
    return num_batches * BATCH_SIZE / (time.perf_counter() - start)


def _tf_rate(batches, num_batches: int) -> float:
    iterator = iter(batches.repeat())
    next(iterator)  # start-up
    start = time.perf_counter()
    for _ in range(num_batches):
        next(iterator)
    return num_batches * BATCH_SIZE / (time.perf_counter() - start)


def _case(load_kwargs: dict, rounds: int, num_batches: int, workers: int) -> dict:
    numpy_batches = data.for_method(data.load(pipeline="numpy", **load_kwargs), "two_views")
    numpy_batches[0]
    result = {"workers": workers}
    sides = {"numpy_1_thread": lambda: _numpy_rate(numpy_batches, num_batches, 1),
             f"numpy_{workers}_threads": lambda: _numpy_rate(numpy_batches, num_batches,
                                                             workers)}
    if backends.has_tensorflow():
        tf_batches = data.for_method(data.load(pipeline="tf", **load_kwargs), "two_views")
        _tf_rate(tf_batches, 5)  # warm up the map functions
        sides["tf_data"] = lambda: _tf_rate(tf_batches, num_batches)
    rates = {name: [] for name in sides}
    for r in range(rounds):
        for name in (list(sides) if r % 2 == 0 else list(reversed(sides))):
            rates[name].append(sides[name]())
    for name, values in rates.items():
        result[f"{name}_examples_per_second"] = statistics.median(values)
    if "tf_data" in rates:
        for name in list(sides)[:2]:
            result[f"{name}_over_tf_data"] = statistics.median(
                a / b for a, b in zip(rates[name], rates["tf_data"]))
    return result


def run(quick: bool = False) -> dict:
    rounds, num_batches = (3, 20) if quick else (7, 60)
    workers = min(8, os.cpu_count() or 1)
    cases = {"cifar_shaped_32x32x3": dict(dataset="synthetic", source="synthetic",
                                          num_examples=12_800, image_shape=(32, 32, 3),
                                          num_classes=10, batch_size=BATCH_SIZE)}
    if os.path.isdir(FASHION_MNIST):
        cases["fashion_mnist_28x28x1"] = dict(dataset="fashion_mnist", source="idx",
                                              path=FASHION_MNIST, batch_size=BATCH_SIZE)
    return {name: _case(kwargs, rounds, num_batches, workers) for name, kwargs in cases.items()}
