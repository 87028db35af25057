"""The tf.data half of `data.load` (pipeline.py): streamed TFDS data and tf.data splits.

Imported only when the tf.data path is used (`pipeline="tf"`, the default on
the TensorFlow backend), so `epsd_tf.data` imports without TensorFlow.

* `streamed`: TFDS splits; `cache` keeps their decoded uint8 images (in
  memory, or in the file `cache` names) before shuffling and augmentation.
* `from_arrays`: in-memory splits as `tf.data.Dataset`s.
* `eval_batches`, `preprocessor`, `resize`: the tf.data evaluation batches,
  the stateless-random `augment.Preprocessor`, the resize of stored images.
"""

from __future__ import annotations

import dataclasses
from typing import Union

import numpy as np
import tensorflow as tf

from epsd_tf.data import arrays as arrays_lib
from epsd_tf.data import augment as augment_lib
from epsd_tf.data import classes, tfds_source

# Streamed datasets without known statistics: computed from this many examples.
_STATS_EXAMPLES = 10_000


@dataclasses.dataclass(frozen=True)
class Streams:
    """Unbatched tf.data splits and what is known about them."""

    num_classes: int
    class_names: tuple | None
    input_shape: tuple
    stats: tuple  # (mean, std) per channel, 0-1 scale
    counts: tuple  # (num_train, num_validation, num_test)
    train_examples: tf.data.Dataset
    validation: tf.data.Dataset | None  # (uint8 image, int32 label)
    test: tf.data.Dataset


def streamed(dataset, *, known, data_dir, validation_fraction, download, num_classes,
             image_size, cache, max_train_examples) -> Streams:
    """The streamed path: TFDS splits, classes from the TFDS label metadata."""
    stream = tfds_source.load_tfds(dataset, data_dir, validation_fraction, download)
    known = known(dataset, stream.image_shape[-1])
    declared, class_names = classes.declared(
        dataset, known=known, source_classes=stream.num_classes,
        class_names=stream.class_names, requested=num_classes,
        where="the TFDS label metadata")
    classes.at_least_two(declared, dataset)
    if image_size is None and None in stream.image_shape[:2]:
        if known is None or known.default_image_size is None:
            raise ValueError(
                f"TFDS dataset {dataset!r} has variable image sizes; pass image_size=")
        image_size = known.default_image_size
    if image_size is not None:
        size = augment_lib.stored_size(image_size)
        store = lambda image, label: (augment_lib.resize_and_center_crop(image, size), label)
        parts = [None if d is None else d.map(store, num_parallel_calls=tf.data.AUTOTUNE)
                 for d in (stream.train, stream.validation, stream.test)]
        stream = dataclasses.replace(stream, train=parts[0], validation=parts[1],
                                     test=parts[2])
    stats = (known.mean, known.std) if known else _stream_stats(stream.train)
    train = _cached(stream.train, cache, "train")
    num_train = stream.num_train
    if max_train_examples is not None:
        train = train.take(int(max_train_examples))
        num_train = min(num_train, int(max_train_examples))
    return Streams(
        num_classes=declared, class_names=class_names,
        input_shape=((image_size, image_size, stream.image_shape[-1])
                     if image_size is not None else stream.image_shape),
        stats=stats, counts=(num_train, stream.num_validation, stream.num_test),
        train_examples=train.enumerate().map(
            lambda i, example: {"image": example[0], "label": example[1], "example_id": i}),
        validation=(None if stream.validation is None else
                    _cached(stream.validation, cache, "validation")),
        test=_cached(stream.test, cache, "test"))


def from_arrays(splits: arrays_lib.ArraySplits) -> tuple:
    """`(train_examples, validation, test)` tf.data splits of in-memory arrays."""
    train = tf.data.Dataset.from_tensor_slices({
        "image": splits.x_train, "label": splits.y_train,
        "example_id": np.arange(len(splits.y_train), dtype=np.int64)})
    validation = (None if splits.x_val is None else
                  tf.data.Dataset.from_tensor_slices((splits.x_val, splits.y_val)))
    return train, validation, tf.data.Dataset.from_tensor_slices((splits.x_test, splits.y_test))


def resize(images, size: int):
    """Stored uint8 images resized and centre-cropped to `size` (numpy in and out)."""
    return None if images is None else augment_lib.resize_and_center_crop(images, size).numpy()


def preprocessor(input_shape, mean, std, augmentation, seed):
    return augment_lib.Preprocessor(input_shape, mean, std, augmentation, seed)


def eval_batches(examples: tf.data.Dataset, preprocess, batch_size: int, deterministic: bool):
    """Batched, normalised (not augmented) evaluation batches of `(image, label)` examples."""
    options = tf.data.Options()
    options.deterministic = deterministic
    # Batch first: the evaluation transform is vectorised over the batch.
    return examples.batch(batch_size).map(
        lambda images, labels: (preprocess(images, False), labels),
        num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE).with_options(options)


def _stream_stats(train: tf.data.Dataset) -> tuple:
    images = np.concatenate([batch for batch, _ in train.take(_STATS_EXAMPLES).batch(
        1000).as_numpy_iterator()])
    return arrays_lib.mean_std(images)


def _cached(dataset: tf.data.Dataset, cache: Union[bool, str], name: str):
    if cache is False:
        return dataset
    return dataset.cache() if cache is True else dataset.cache(f"{cache}.{name}")
