"""TensorFlow Datasets source: streamed splits of a prepared TFDS dataset.

Uses the split names in `known.KNOWN_DATASETS` (e.g. ImageNet's labelled
"validation" split as the test set) or, for other TFDS names, "train", "test"
(else "validation") and "validation" (when a separate test split exists). When
there is no validation split, it is carved deterministically from the end of
the training split with TFDS slicing (`train[:n-k]` / `train[n-k:]`; TFDS
shuffles examples when it prepares a dataset, so the tail is a random subset).

TFDS does not download here: prepare the data on a connected machine
(`tfds build <name> --data_dir=DIR`, or `download=True`) and pass `data_dir`.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from epsd_tf.data.known import KNOWN_DATASETS


@dataclasses.dataclass
class StreamSplits:
    """Unbatched `(uint8 image, int32 label)` datasets in a fixed order."""

    train: tf.data.Dataset
    validation: Optional[tf.data.Dataset]
    test: tf.data.Dataset
    num_train: int
    num_validation: int
    num_test: int
    num_classes: int
    image_shape: tuple
    class_names: Optional[tuple]


def _builder(name: str, data_dir: Optional[str]):
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as error:
        raise ValueError(
            f"Unknown dataset {name!r}: not a TFDS dataset. Known datasets: "
            f"{sorted(KNOWN_DATASETS)} (or any TFDS name, see tfds.list_builders())"
        ) from error


def _split_names(builder, name: str):
    """(train, test, validation or None) split names of the builder."""
    if name in KNOWN_DATASETS:
        known = KNOWN_DATASETS[name]
        return known.train_split, known.test_split, known.validation_split
    available = set(builder.info.splits.keys())
    if available and "train" not in available:
        raise ValueError(f"TFDS dataset {name!r} has no 'train' split; it has {sorted(available)}")
    if not available or "test" in available:
        validation = "validation" if "validation" in available else None
        return "train", "test", validation
    if "validation" in available:
        return "train", "validation", None
    raise ValueError(
        f"TFDS dataset {name!r} has neither 'test' nor 'validation' split; it has "
        f"{sorted(available)}")


def _read(builder, split: str, data_dir: Optional[str]) -> tf.data.Dataset:
    try:
        dataset = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
    except AssertionError as error:  # TFDS asserts when the data is not prepared.
        raise FileNotFoundError(
            f"TFDS data for {builder.name!r} not found in {builder.data_dir!r} "
            f"(data_dir={data_dir!r}). Prepare it on a machine with internet "
            f"(`tfds build {builder.name} --data_dir=DIR`, or data.load(..., "
            "download=True)), copy DIR here and pass data_dir=DIR") from error
    return dataset.map(lambda image, label: (image, tf.cast(label, tf.int32)),
                       num_parallel_calls=tf.data.AUTOTUNE)


def _count(builder, split: str, dataset: tf.data.Dataset) -> int:
    if builder.info.splits:
        return int(builder.info.splits[split].num_examples)
    cardinality = int(dataset.cardinality())
    if cardinality >= 0:
        return cardinality
    logging.warning("TFDS has no split metadata for %s[%s]; counting by iteration",
                    builder.name, split)
    return int(dataset.reduce(0, lambda count, _: count + 1))


def load_tfds(name: str, data_dir: Optional[str] = None,
              validation_fraction: float = 0.1, download: bool = False) -> StreamSplits:
    """Opens the train/validation/test splits of TFDS dataset `name`.

    Raises:
        ValueError: unknown TFDS name, missing supervised keys or splits, bad
            `validation_fraction`.
        FileNotFoundError: the data is not prepared in `data_dir`.
    """
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(
            f"validation_fraction must be in [0, 1), got {validation_fraction!r}")
    builder = _builder(name, data_dir)
    keys = builder.info.supervised_keys
    if not keys or len(keys) != 2:
        raise ValueError(
            f"TFDS dataset {name!r} has no (image, label) supervised keys: {keys!r}")
    image_shape = tuple(builder.info.features[keys[0]].shape)
    label_feature = builder.info.features[keys[1]]
    if len(image_shape) != 3 or not hasattr(label_feature, "num_classes"):
        raise ValueError(
            f"TFDS dataset {name!r} is not image classification: image shape "
            f"{image_shape}, label feature {type(label_feature).__name__}")
    if download:
        builder.download_and_prepare()
    train_split, test_split, validation_split = _split_names(builder, name)

    validation = None
    num_validation = 0
    train = _read(builder, train_split, data_dir)
    if validation_split is not None:
        validation = _read(builder, validation_split, data_dir)
        num_validation = _count(builder, validation_split, validation)
    elif validation_fraction > 0:
        total = _count(builder, train_split, train)
        num_validation = int(round(validation_fraction * total))
        keep = total - num_validation
        if keep <= 0:
            raise ValueError(
                f"validation_fraction={validation_fraction} leaves no training "
                f"examples out of {total}")
        if num_validation > 0:
            train_split, validation_split = (f"{train_split}[:{keep}]",
                                             f"{train_split}[{keep}:]")
            train = _read(builder, train_split, data_dir)
            validation = _read(builder, validation_split, data_dir)
            num_validation = _count(builder, validation_split, validation)
    test = _read(builder, test_split, data_dir)
    names = getattr(label_feature, "names", None)
    return StreamSplits(
        train=train, validation=validation, test=test,
        num_train=_count(builder, train_split, train), num_validation=num_validation,
        num_test=_count(builder, test_split, test),
        num_classes=int(label_feature.num_classes), image_shape=image_shape,
        class_names=tuple(names) if names else None)
