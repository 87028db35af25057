"""What a caller needs to know about batches of either input path, without TensorFlow.

The training and evaluation batches are a `tf.data.Dataset` on the TensorFlow
backend and a `keras.utils.PyDataset` (array_batches.py) elsewhere; these
helpers answer the same questions for both, so `train/` and the analysis
stages never ask which path they got.
"""

from __future__ import annotations

from typing import Optional

import numpy as np


def is_tf_dataset(batches) -> bool:
    """True for a `tf.data.Dataset` (told by its `element_spec`; TF is not imported)."""
    return hasattr(batches, "element_spec") and hasattr(batches, "cardinality")


def batch_size(batches) -> Optional[int]:
    """The static batch size of training batches (None when not fixed)."""
    if is_tf_dataset(batches):
        images = batches.element_spec[0]
        images = images["image"] if isinstance(images, dict) else images
        return images.shape[0]
    return getattr(batches, "batch_size", None)


def num_batches(batches) -> Optional[int]:
    """Batches per epoch, or None when unknown (a streamed TFDS pipeline)."""
    if is_tf_dataset(batches):
        count = int(batches.cardinality())
        return count if count >= 0 else None
    return len(batches)


def first_examples(batches, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` examples `(images, labels)` of `(images, labels)` batches.

    Reads only as many batches as needed; fewer examples when the data ends.
    """
    images, labels, seen = [], [], 0
    for x, y in batches:
        images.append(np.asarray(x))
        labels.append(np.asarray(y))
        seen += len(labels[-1])
        if seen >= count:
            break
    if not images:
        raise ValueError("the batches are empty")
    return np.concatenate(images)[:count], np.concatenate(labels)[:count]
