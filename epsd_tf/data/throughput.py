"""Input-pipeline throughput: how many images per second a pipeline delivers.

Iterates the pipeline only (no model), so the lead's benchmark can check the
input pipeline is not the bottleneck (it should deliver several times the
model's training speed).
"""

from __future__ import annotations

import itertools
import time

import numpy as np

from epsd_tf.data import batch_info
from epsd_tf.data.splits import DataSplits


def _batch_images(element) -> int:
    labels = element[1] if isinstance(element, tuple) else element["label"]
    return int(np.shape(labels)[0])


def _repeated(dataset):
    """Batches of `dataset` forever: tf.data's `repeat`, or epochs of a PyDataset."""
    if batch_info.is_tf_dataset(dataset):
        yield from dataset.repeat()
        return
    for _ in itertools.count():
        for index in range(len(dataset)):
            yield dataset[index]
        dataset.on_epoch_end()


def measure_throughput(dataset, num_batches: int = 50,
                       warmup_batches: int = 2) -> float:
    """Images per second delivered by iterating `dataset` (batched).

    The dataset is repeated so a short epoch does not end the measurement; the
    first `warmup_batches` (pipeline start-up, shuffle-buffer fill) are not timed.
    A `keras.utils.PyDataset` (the numpy path) is read in one thread, batch
    after batch: the rate of one worker.

    Args:
        dataset: batches `(features, labels [B])`, e.g. `data.for_method(...)`
            (tf.data or PyDataset), or a `DataSplits` (its `train` batches are timed).
        num_batches: batches timed (>= 1).
        warmup_batches: batches read before timing starts.

    Returns:
        Images per second over the timed batches.
    """
    if num_batches < 1 or warmup_batches < 0:
        raise ValueError(
            f"num_batches must be >= 1 and warmup_batches >= 0, got {num_batches}, "
            f"{warmup_batches}")
    if isinstance(dataset, DataSplits):
        dataset = dataset.train
    iterator = _repeated(dataset)
    for _ in range(warmup_batches):
        next(iterator)
    images = 0
    start = time.perf_counter()
    for _ in range(num_batches):
        images += _batch_images(next(iterator))
    return images / (time.perf_counter() - start)
