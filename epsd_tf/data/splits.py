"""The containers `data.load` returns: `DatasetInfo` and `DataSplits`.

See docs/DESIGN.md (`epsd_tf.data` contract).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional

import numpy as np


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model and a report need to know about a loaded dataset.

    Attributes:
        name: dataset name as passed to `data.load`.
        num_classes: number of labels; labels are `0 .. num_classes - 1`.
        image_shape: `(H, W, C)` of the model input (after resizing/cropping).
        num_train: training examples (after the validation carve-out).
        num_validation: validation examples (0 when there is no validation split).
        num_test: test examples.
        mean: per-channel normalisation mean on the 0–1 pixel scale.
        std: per-channel normalisation standard deviation on the 0–1 pixel scale.
        source: the source that was used ("tfds", "idx", "npz", "folder", "synthetic").
        class_names: label names when known, else None.
    """

    name: str
    num_classes: int
    image_shape: tuple
    num_train: int
    num_validation: int
    num_test: int
    mean: tuple
    std: tuple
    source: str = ""
    class_names: Optional[tuple] = None


@dataclasses.dataclass(frozen=True, eq=False)
class DataSplits:
    """The input pipelines of one dataset (DESIGN.md, `epsd_tf.data`).

    Frozen: `data.load` builds it once; `train` is derived from the fields on
    first use (`for_method(splits, "plain")`).

    Batches are `tf.data.Dataset`s on the tf.data path (`pipeline == "tf"`)
    and `keras.utils.PyDataset`s on the TF-free numpy path (`"numpy"`; see
    method_batches.py and array_batches.py); `data.batch_info` reads either.

    Attributes:
        info: the `DatasetInfo`.
        train: (property) batches `(float32 [B, H, W, C] normalised, int32 [B])`,
            shuffled (seeded, reshuffled each epoch), augmented,
            `drop_remainder=True`, prefetched, not repeated.
        validation: batches `(images, labels)`, normalised, not augmented, last
            partial batch kept; None when `info.num_validation == 0`.
        test: like `validation`, for the test split.
        train_examples: unbatched, un-augmented, un-normalised training examples
            in a fixed order: `{"image": uint8 [h, w, C], "label": int32 [],
            "example_id": int64 []}` with ids `0 .. num_train - 1` (a
            `tf.data.Dataset`, or an `array_batches.ArrayExamples` iterable on
            the numpy path). `[h, w]` is
            the stored size: the model input size, except for random-resized-crop
            datasets (input >= 128 px), which store `round(size / 0.875)` px.
        preprocess: `preprocess(image_uint8, training, seed=None) -> float32`;
            normalises, and augments when `training` (METHOD.md §4).
        batch_size: training batch size used for `train` (default for `for_method`).
        eval_batch_size: batch size of `validation` and `test`.
        seed: seed of shuffling and augmentation.
        train_arrays: `(images uint8 [N, h, w, C], labels int32 [N])` for
            in-memory sources (idx, npz, folder, synthetic); None for streamed
            sources (tfds). `for_method` uses it for exact class-pair tables.
        shuffle_buffer: shuffle buffer of streamed sources (in-memory sources
            shuffle all examples).
        deterministic: whether parallel maps keep element order.
        pipeline: "tf" (tf.data) or "numpy" (TF-free, in-memory sources only).
        workers: threads building numpy-path training batches ahead of the step.
    """

    info: DatasetInfo
    validation: Optional[Any]
    test: Any
    train_examples: Any
    preprocess: Callable
    batch_size: int
    eval_batch_size: int
    seed: int = 0
    train_arrays: Optional[tuple] = None
    shuffle_buffer: int = 10_000
    deterministic: bool = True
    pipeline: str = "tf"
    workers: int = 1

    @functools.cached_property
    def train(self):
        """The plain training batches (see the class docstring), built once."""
        from epsd_tf.data import method_batches  # It imports this module.

        batches = method_batches.for_method(self, "plain")
        if self.pipeline != "tf":
            return batches
        import tensorflow as tf

        options = tf.data.Options()
        options.deterministic = self.deterministic
        return batches.with_options(options)

    @property
    def in_memory(self) -> bool:
        """True when the training examples are numpy arrays (not streamed)."""
        return self.train_arrays is not None

    def train_label_counts(self) -> Optional[np.ndarray]:
        """Examples per class `[num_classes]` for in-memory sources, else None."""
        if self.train_arrays is None:
            return None
        return np.bincount(self.train_arrays[1], minlength=self.info.num_classes)
