"""`data.load`: one dataset from any source as batched tf.data pipelines.

Sources (DESIGN.md, `epsd_tf.data`): "tfds", "idx", "npz", "folder",
"synthetic", and "auto" (`idx` from `/usr/share/datasets/<name-with-dashes>/`
when that directory exists, "synthetic" for the name "synthetic", the source
implied by `path` when one is given, else "tfds").

In-memory sources (idx, npz, folder, synthetic) are read with numpy once and
validated before any pipeline is built; images stay uint8 until the per-example
map. TFDS splits are streamed; `cache` keeps their decoded uint8 images (in
memory, or in the file `cache` names) before shuffling and augmentation.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Union

from absl import logging
import numpy as np
import tensorflow as tf

from epsd_tf.data import arrays as arrays_lib
from epsd_tf.data import augment as augment_lib
from epsd_tf.data import folder, idx, method_batches, synthetic, tfds_source
from epsd_tf.data.known import KNOWN_DATASETS
from epsd_tf.data.splits import DatasetInfo, DataSplits

SOURCES = ("auto", "tfds", "idx", "npz", "folder", "synthetic")
DATASETS_ROOT = "/usr/share/datasets"
# Streamed datasets without known statistics: computed from this many examples.
_STATS_EXAMPLES = 10_000


def resolve_source(dataset: str, source: str, path: Optional[str]):
    """Returns `(source, path)` with "auto" replaced by a concrete source."""
    if source not in SOURCES:
        raise ValueError(f"Unknown source {source!r}; valid: {SOURCES}")
    if source != "auto":
        if source in ("idx", "npz", "folder") and path is None:
            raise ValueError(f"source={source!r} needs path=")
        return source, path
    if path is not None:
        if path.endswith(".npz"):
            return "npz", path
        if os.path.isdir(os.path.join(path, "train")):
            return "folder", path
        if any(os.path.exists(os.path.join(path, stem + ext))
               for stem in idx.FILES.values() for ext in ("", ".gz")):
            return "idx", path
        raise ValueError(
            f"source='auto' cannot tell the format of path={path!r} (not a .npz "
            "file, no train/ folder, no IDX files); pass source= one of "
            f"{SOURCES[1:]}")
    if dataset == "synthetic":
        return "synthetic", None
    local = os.path.join(DATASETS_ROOT, dataset.replace("_", "-"))
    if os.path.isdir(local):
        return "idx", local
    return "tfds", None


def _check_known(dataset: str, num_classes: Optional[int], channels: int):
    """Known datasets fix num_classes and statistics; channels must agree."""
    known = KNOWN_DATASETS.get(dataset)
    if known is None:
        return num_classes, None
    if len(known.mean) != channels:
        raise ValueError(
            f"dataset {dataset!r} has {len(known.mean)}-channel images, the data "
            f"has {channels}")
    if num_classes is not None and num_classes != known.num_classes:
        raise ValueError(
            f"dataset {dataset!r} has {known.num_classes} classes, got num_classes="
            f"{num_classes}")
    return known.num_classes, known


def _load_arrays(dataset, source, path, image_size, validation_fraction,
                 num_classes, synthetic_options):
    if source == "idx":
        raw = idx.load_idx(path)
    elif source == "npz":
        raw = arrays_lib.load_npz(path)
    elif source == "folder":
        raw = folder.load_folder(path, image_size)
    else:
        unknown = sorted(set(synthetic_options) - set(synthetic.OPTIONS))
        if unknown:
            raise ValueError(
                f"unknown synthetic options {unknown}; valid: {list(synthetic.OPTIONS)}")
        raw = synthetic.make_synthetic(**synthetic_options)
    channels = np.asarray(raw.x_train).shape[-1] if np.ndim(raw.x_train) == 4 else 1
    num_classes, known = _check_known(dataset, num_classes, channels)
    splits, num_classes = arrays_lib.checked(raw, num_classes)
    if splits.x_val is None:
        x_train, y_train, x_val, y_val = arrays_lib.carve_validation(
            splits.x_train, splits.y_train, validation_fraction)
        splits = dataclasses.replace(splits, x_train=x_train, y_train=y_train,
                                     x_val=x_val if len(x_val) else None,
                                     y_val=y_val if len(y_val) else None)
    if image_size is not None:
        size = augment_lib.stored_size(image_size)
        resize = lambda x: None if x is None else augment_lib.resize_and_center_crop(
            x, size).numpy()
        splits = dataclasses.replace(splits, x_train=resize(splits.x_train),
                                     x_val=resize(splits.x_val), x_test=resize(splits.x_test))
    stats = (known.mean, known.std) if known else arrays_lib.mean_std(splits.x_train)
    return splits, num_classes, stats, known


def _stream_stats(train: tf.data.Dataset) -> tuple:
    images = np.concatenate([batch for batch, _ in train.take(_STATS_EXAMPLES).batch(
        1000).as_numpy_iterator()])
    return arrays_lib.mean_std(images)


def _cached(dataset: tf.data.Dataset, cache: Union[bool, str], name: str):
    if cache is False:
        return dataset
    return dataset.cache() if cache is True else dataset.cache(f"{cache}.{name}")


def _eval_batches(examples: tf.data.Dataset, preprocess, batch_size: int):
    # Batch first: the evaluation transform is vectorised over the batch.
    return examples.batch(batch_size).map(
        lambda images, labels: (preprocess(images, False), labels),
        num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def load(dataset: str, *, source: str = "auto", path: Optional[str] = None,
         data_dir: Optional[str] = None, batch_size: int = 128,
         eval_batch_size: Optional[int] = None, validation_fraction: float = 0.1,
         augment: bool = True, seed: int = 0, cache: Union[bool, str] = True,
         image_size: Optional[int] = None, crop_padding: Optional[int] = None,
         horizontal_flip: Optional[bool] = None, num_classes: Optional[int] = None,
         shuffle_buffer: int = 10_000, deterministic: bool = True,
         download: bool = False, max_train_examples: Optional[int] = None,
         **synthetic_options) -> DataSplits:
    """Loads `dataset` as train/validation/test pipelines (DESIGN.md contract).

    Args:
        dataset: a name: a TFDS name (e.g. "cifar10", "imagenet2012",
            "imagenet_resized/64x64"), "synthetic", or any name for
            idx/npz/folder data. Names in `KNOWN_DATASETS` fix the class count
            and normalisation statistics; other data is normalised with
            statistics computed on its training split.
        source: one of `SOURCES`.
        path: IDX directory, .npz file or image folder (idx/npz/folder).
        data_dir: TFDS data directory.
        batch_size: training batch size.
        eval_batch_size: validation/test batch size (default `batch_size`).
        validation_fraction: fraction of train carved out (deterministically)
            for validation when the source has no validation split.
        augment: apply the METHOD.md §4 training augmentation.
        seed: shuffling and augmentation seed.
        cache: cache decoded uint8 TFDS images: True (memory), False, or a
            file prefix. In-memory sources need no cache.
        image_size: resize to `image_size × image_size` model inputs
            (>= 128: random-resized-crop training, centre-crop evaluation).
        crop_padding, horizontal_flip: override the augmentation defaults.
        num_classes: expected class count (labels are checked against it).
        shuffle_buffer: shuffle buffer of streamed (TFDS) training data.
        deterministic: parallel maps keep element order (reproducible batches).
        download: let TFDS download and prepare the data first.
        max_train_examples: keep only the first N training examples (after the
            validation carve-out), e.g. to fit a time budget; None keeps all.
        **synthetic_options: for source "synthetic": `num_examples, num_test,
            image_shape, num_classes, noise, data_seed` (see synthetic.py).

    Raises:
        ValueError: unknown source/dataset/option, bad labels, shapes or sizes.
        FileNotFoundError: missing files, with how to get the data.
    """
    source, path = resolve_source(dataset, source, path)
    if synthetic_options and source != "synthetic":
        raise ValueError(
            f"options {sorted(synthetic_options)} apply only to source='synthetic'; "
            f"source is {source!r}")
    eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
    for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size),
                        ("shuffle_buffer", shuffle_buffer)):
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value!r}")
    if image_size is not None and int(image_size) < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size!r}")
    if max_train_examples is not None and int(max_train_examples) < 1:
        raise ValueError(f"max_train_examples must be >= 1 or None, got "
                         f"{max_train_examples!r}")
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction!r}")

    if source == "tfds":
        stream = tfds_source.load_tfds(dataset, data_dir, validation_fraction, download)
        num_classes, known = _check_known(dataset, num_classes, stream.image_shape[-1])
        num_classes = stream.num_classes if num_classes is None else num_classes
        if image_size is None and None in stream.image_shape[:2]:
            if known is None or known.default_image_size is None:
                raise ValueError(
                    f"TFDS dataset {dataset!r} has variable image sizes; pass image_size=")
            image_size = known.default_image_size
        if image_size is not None:
            size = augment_lib.stored_size(image_size)
            store = lambda image, label: (augment_lib.resize_and_center_crop(image, size),
                                          label)
            parts = [None if d is None else d.map(store, num_parallel_calls=tf.data.AUTOTUNE)
                     for d in (stream.train, stream.validation, stream.test)]
            stream = dataclasses.replace(stream, train=parts[0], validation=parts[1],
                                         test=parts[2])
        input_shape = ((image_size, image_size, stream.image_shape[-1])
                       if image_size is not None else stream.image_shape)
        stats = (known.mean, known.std) if known else _stream_stats(stream.train)
        train = _cached(stream.train, cache, "train")
        num_train = stream.num_train
        if max_train_examples is not None:
            train = train.take(int(max_train_examples))
            num_train = min(num_train, int(max_train_examples))
        train_examples = train.enumerate().map(
            lambda i, example: {"image": example[0], "label": example[1], "example_id": i})
        evals = {name: None if d is None else _cached(d, cache, name)
                 for name, d in (("validation", stream.validation), ("test", stream.test))}
        counts = (num_train, stream.num_validation, stream.num_test)
        class_names, train_arrays = stream.class_names, None
    else:
        splits, num_classes, stats, known = _load_arrays(
            dataset, source, path, image_size, validation_fraction, num_classes,
            synthetic_options)
        if max_train_examples is not None:
            splits = dataclasses.replace(splits, x_train=splits.x_train[:max_train_examples],
                                         y_train=splits.y_train[:max_train_examples])
        stored_shape = splits.x_train.shape[1:]
        input_shape = ((image_size, image_size, stored_shape[-1])
                       if image_size is not None else stored_shape)
        train_examples = tf.data.Dataset.from_tensor_slices({
            "image": splits.x_train, "label": splits.y_train,
            "example_id": np.arange(len(splits.y_train), dtype=np.int64)})
        evals = {"validation": None if splits.x_val is None else
                 tf.data.Dataset.from_tensor_slices((splits.x_val, splits.y_val)),
                 "test": tf.data.Dataset.from_tensor_slices((splits.x_test, splits.y_test))}
        counts = (len(splits.y_train), 0 if splits.y_val is None else len(splits.y_val),
                  len(splits.y_test))
        class_names = splits.class_names or (known.class_names if known else None)
        train_arrays = (splits.x_train, splits.y_train)

    input_shape = tuple(int(d) for d in input_shape)
    info = DatasetInfo(name=dataset, num_classes=int(num_classes), image_shape=input_shape,
                       num_train=counts[0], num_validation=counts[1], num_test=counts[2],
                       mean=tuple(stats[0]), std=tuple(stats[1]), source=source,
                       class_names=class_names)
    if info.num_train == 0 or info.num_test == 0:
        raise ValueError(f"dataset {dataset!r} has an empty split: {info}")
    augmentation = augment_lib.default_augmentation(input_shape, augment, crop_padding,
                                                horizontal_flip)
    preprocess = augment_lib.Preprocessor(input_shape, info.mean, info.std, augmentation, seed)
    options = tf.data.Options()
    options.deterministic = deterministic
    evals = {name: None if d is None else
             _eval_batches(d, preprocess, eval_batch_size).with_options(options)
             for name, d in evals.items()}
    splits = DataSplits(info=info, train=None, validation=evals["validation"],
                        test=evals["test"], train_examples=train_examples,
                        preprocess=preprocess, batch_size=int(batch_size),
                        eval_batch_size=int(eval_batch_size), seed=int(seed),
                        train_arrays=train_arrays, shuffle_buffer=int(shuffle_buffer),
                        deterministic=deterministic)
    splits.train = method_batches.for_method(splits, "plain").with_options(options)
    logging.info("Loaded %s from %s: %s; augmentation %s", dataset, source, info,
                 augmentation)
    return splits
