"""`data.load`: one dataset from any source as batched input pipelines.

Sources (DESIGN.md, `epsd_tf.data`): "tfds", "idx", "npz", "folder",
"synthetic", and "auto" (`idx` from `/usr/share/datasets/<name-with-dashes>/`
when that directory exists, "synthetic" for the name "synthetic", the source
implied by `path` when one is given, else "tfds").

Two ways in, one frozen `DataSplits` out (`_assemble`):

* in memory (idx, npz, folder, synthetic): read with numpy once; images,
  labels and classes are validated before any pipeline is built; images stay
  uint8 until the per-batch (numpy) or per-example (tf.data) transform.
* streamed (tfds, tf_pipeline.py): splits are streamed; `cache` keeps their
  decoded uint8 images before shuffling and augmentation.

Two pipelines (`pipeline=`): "tf" (tf.data, tf_pipeline.py / tf_batches.py;
the default on the TensorFlow backend) and "numpy" (the TF-free path of
numpy_augment.py / array_batches.py; the default on other backends, in-memory
sources only). This module imports no TensorFlow.

The classes of every source are declared, not inferred (see classes.py).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional, Union

from absl import logging

from epsd_tf import backends
from epsd_tf.data import arrays as arrays_lib
from epsd_tf.data import augmentation as augmentation_lib
from epsd_tf.data import classes, folder, idx, synthetic
from epsd_tf.data.known import KNOWN_DATASETS
from epsd_tf.data.splits import DatasetInfo, DataSplits

SOURCES = ("auto", "tfds", "idx", "npz", "folder", "synthetic")
PIPELINES = ("auto", "tf", "numpy")
DATASETS_ROOT = "/usr/share/datasets"
# Default threads building numpy-path training batches.
MAX_DEFAULT_WORKERS = 8


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


@dataclasses.dataclass(frozen=True)
class _Examples:
    """The splits of either way in, and what is known about them."""

    source: str
    num_classes: int
    class_names: Optional[tuple]
    input_shape: tuple
    stats: tuple  # (mean, std) per channel, 0-1 scale
    counts: tuple  # (num_train, num_validation, num_test)
    arrays: Optional[arrays_lib.ArraySplits] = None  # in memory
    streams: Any = None  # streamed: tf_pipeline.Streams


def _known(dataset: str, channels: int):
    """The `KnownDataset` of `dataset` (None if unknown); its channels must agree."""
    known = KNOWN_DATASETS.get(dataset)
    if known is not None and len(known.mean) != channels:
        raise ValueError(
            f"dataset {dataset!r} has {len(known.mean)}-channel images, the data "
            f"has {channels}")
    return known


def _read_arrays(source, path, image_size, synthetic_options) -> arrays_lib.ArraySplits:
    if source == "idx":
        return idx.load_idx(path)
    if source == "npz":
        return arrays_lib.load_npz(path)
    if source == "folder":
        return folder.load_folder(path, image_size)
    unknown = sorted(set(synthetic_options) - set(synthetic.OPTIONS))
    if unknown:
        raise ValueError(
            f"unknown synthetic options {unknown}; valid: {list(synthetic.OPTIONS)}")
    return synthetic.make_synthetic(**synthetic_options)


_HOW_TO_DECLARE = {
    "idx": "IDX files carry no class list: use a known dataset name ({known}) or pass "
           "num_classes=",
    "npz": "store num_classes (a scalar) or class_names (strings) in the .npz, or pass "
           "num_classes=",
}


def _in_memory(dataset, source, path, *, image_size, validation_fraction, num_classes,
               max_train_examples, synthetic_options, pipeline) -> _Examples:
    """The in-memory way in: numpy arrays, checked once."""
    if source == "synthetic" and num_classes is not None:
        synthetic_options = dict(synthetic_options, num_classes=num_classes)
    splits = arrays_lib.checked(_read_arrays(source, path, image_size, synthetic_options))
    known = _known(dataset, splits.x_train.shape[-1])
    declared, class_names = classes.declared(
        dataset, known=known, source_classes=splits.num_classes,
        class_names=splits.class_names, requested=num_classes, where=f"the {source} data")
    how = _HOW_TO_DECLARE.get(source, "pass num_classes=").format(known=sorted(KNOWN_DATASETS))
    if source == "idx" and declared is None:
        raise ValueError(f"dataset {dataset!r}: {how}")
    if splits.x_val is None:
        x_train, y_train, x_val, y_val = arrays_lib.carve_validation(
            splits.x_train, splits.y_train, validation_fraction)
        splits = dataclasses.replace(splits, x_train=x_train, y_train=y_train,
                                     x_val=x_val if len(x_val) else None,
                                     y_val=y_val if len(y_val) else None)
    if max_train_examples is not None:
        splits = dataclasses.replace(splits, x_train=splits.x_train[:max_train_examples],
                                     y_train=splits.y_train[:max_train_examples])
    labels = {"train": splits.y_train, "test": splits.y_test}
    if splits.y_val is not None:
        labels["validation"] = splits.y_val
    num_classes = classes.check_labels(labels, declared, dataset, how)
    if image_size is not None:
        size = augmentation_lib.stored_size(image_size)
        if pipeline == "tf":
            from epsd_tf.data import tf_pipeline

            resize = lambda x: tf_pipeline.resize(x, size)
        else:
            from epsd_tf.data import numpy_augment

            resize = lambda x: None if x is None else numpy_augment.resize_and_center_crop(
                x, size)
        splits = dataclasses.replace(splits, x_train=resize(splits.x_train),
                                     x_val=resize(splits.x_val), x_test=resize(splits.x_test))
    stored_shape = splits.x_train.shape[1:]
    return _Examples(
        source=source, num_classes=num_classes, class_names=class_names,
        input_shape=((image_size, image_size, stored_shape[-1]) if image_size is not None
                     else stored_shape),
        stats=(known.mean, known.std) if known else arrays_lib.mean_std(splits.x_train),
        counts=(len(splits.y_train), 0 if splits.y_val is None else len(splits.y_val),
                len(splits.y_test)),
        arrays=splits)


def _assemble(dataset: str, examples: _Examples, *, batch_size, eval_batch_size, augment,
              seed, crop_padding, horizontal_flip, shuffle_buffer, deterministic,
              pipeline, workers) -> DataSplits:
    """Builds the `DataSplits` of either pipeline: info, preprocessing, eval batches."""
    input_shape = tuple(int(d) for d in examples.input_shape)
    mean, std = examples.stats
    info = DatasetInfo(name=dataset, num_classes=int(examples.num_classes),
                       image_shape=input_shape, num_train=int(examples.counts[0]),
                       num_validation=int(examples.counts[1]),
                       num_test=int(examples.counts[2]), mean=tuple(mean), std=tuple(std),
                       source=examples.source, class_names=examples.class_names)
    if info.num_train == 0 or info.num_test == 0:
        raise ValueError(f"dataset {dataset!r} has an empty split: {info}")
    augmentation = augmentation_lib.default_augmentation(input_shape, augment, crop_padding,
                                                         horizontal_flip)
    arrays = examples.arrays
    if pipeline == "numpy":
        from epsd_tf.data import array_batches, numpy_augment

        preprocess = numpy_augment.NumpyPreprocessor(input_shape, info.mean, info.std,
                                                     augmentation, seed)
        evals = {name: None if x is None else array_batches.EvalBatches(
                     x, y, batch_size=eval_batch_size, preprocess=preprocess)
                 for name, x, y in (("validation", arrays.x_val, arrays.y_val),
                                    ("test", arrays.x_test, arrays.y_test))}
        train_examples = array_batches.ArrayExamples(arrays.x_train, arrays.y_train)
    else:
        from epsd_tf.data import tf_pipeline

        preprocess = tf_pipeline.preprocessor(input_shape, info.mean, info.std, augmentation,
                                              seed)
        if arrays is not None:
            train_examples, validation, test = tf_pipeline.from_arrays(arrays)
        else:
            streams = examples.streams
            train_examples, validation, test = (streams.train_examples, streams.validation,
                                                streams.test)
        evals = {name: None if d is None else tf_pipeline.eval_batches(
                     d, preprocess, eval_batch_size, deterministic)
                 for name, d in (("validation", validation), ("test", test))}
    logging.info("Loaded %s from %s (%s pipeline): %s; augmentation %s", dataset,
                 examples.source, pipeline, info, augmentation)
    return DataSplits(info=info, validation=evals["validation"], test=evals["test"],
                      train_examples=train_examples, preprocess=preprocess,
                      batch_size=int(batch_size), eval_batch_size=int(eval_batch_size),
                      seed=int(seed),
                      train_arrays=None if arrays is None else (arrays.x_train,
                                                                arrays.y_train),
                      shuffle_buffer=int(shuffle_buffer), deterministic=deterministic,
                      pipeline=pipeline, workers=int(workers))


def resolve_pipeline(pipeline: str, source: str, dataset: str) -> str:
    """The concrete pipeline ("tf" or "numpy") for `pipeline` and a resolved `source`.

    "auto" is "tf" on Keras' TensorFlow backend and "numpy" elsewhere.

    Raises:
        ValueError: unknown pipeline; TFDS data without the tf.data pipeline
            (e.g. on JAX); "tf" without TensorFlow installed.
    """
    if pipeline not in PIPELINES:
        raise ValueError(f"Unknown pipeline {pipeline!r}; valid: {PIPELINES}")
    backend = backends.backend()
    if pipeline == "auto":
        pipeline = "tf" if backend == "tensorflow" else "numpy"
    if pipeline == "tf" and not backends.has_tensorflow():
        raise ValueError("pipeline='tf' (tf.data) needs TensorFlow, which is not installed; "
                         "use pipeline='numpy' (in-memory sources)")
    if source == "tfds" and pipeline != "tf":
        raise ValueError(
            f"dataset {dataset!r} comes from TFDS (source 'tfds'; 'auto' picks it when "
            f"{DATASETS_ROOT}/<name>/ holds no IDX copy), which streams through tf.data and "
            f"needs TensorFlow, but Keras runs on {backend!r}. Here, use an in-memory "
            "source: source='npz' with path= a .npz of x_train, y_train, x_test, y_test "
            "(write it once on a TensorFlow machine, e.g. with tfds.as_numpy), or 'idx', "
            "'folder', 'synthetic'; or pipeline='tf' where TensorFlow is installed.")
    return pipeline


def load(dataset: str, *, source: str = "auto", path: Optional[str] = None,
         data_dir: Optional[str] = None, batch_size: int = 128,
         eval_batch_size: Optional[int] = None, validation_fraction: float = 0.1,
         augment: bool = True, seed: int = 0, cache: Union[bool, str] = True,
         image_size: Optional[int] = None, crop_padding: Optional[int] = None,
         horizontal_flip: Optional[bool] = None, num_classes: Optional[int] = None,
         shuffle_buffer: int = 10_000, deterministic: bool = True,
         download: bool = False, max_train_examples: Optional[int] = None,
         pipeline: str = "auto", workers: Optional[int] = None,
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
        num_classes: the number of classes. Must agree with what the dataset
            declares (known datasets, TFDS metadata, folder names, a .npz
            `num_classes`/`class_names` entry); needed for IDX files of other
            datasets and for undeclared .npz labels that are not `0 .. K-1`.
            For synthetic data: how many classes to generate.
        shuffle_buffer: shuffle buffer of streamed (TFDS) training data.
        deterministic: parallel maps keep element order (reproducible batches).
        download: let TFDS download and prepare the data first.
        max_train_examples: keep only the first N training examples (after the
            validation carve-out), e.g. to fit a time budget; None keeps all.
        pipeline: one of `PIPELINES`: "tf" (tf.data), "numpy" (TF-free,
            in-memory sources), "auto" ("tf" on Keras' TensorFlow backend,
            "numpy" elsewhere).
        workers: threads building training batches ahead of the step on the
            numpy pipeline (default: the CPU count, at most 8).
        **synthetic_options: for source "synthetic": `num_examples, num_test,
            image_shape, num_classes, noise, data_seed` (see synthetic.py).

    Raises:
        ValueError: unknown source/dataset/option/pipeline, TFDS data without
            the tf.data pipeline (e.g. on JAX), bad shapes or sizes,
            undeclared or disagreeing classes, fewer than two classes, labels
            outside the classes, validation/test labels absent from training.
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
    if workers is None:
        workers = min(MAX_DEFAULT_WORKERS, os.cpu_count() or 1)
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1 or None, got {workers!r}")
    pipeline = resolve_pipeline(pipeline, source, dataset)

    if source == "tfds":
        from epsd_tf.data import tf_pipeline

        streams = tf_pipeline.streamed(
            dataset, known=_known, data_dir=data_dir, validation_fraction=validation_fraction,
            download=download, num_classes=num_classes, image_size=image_size, cache=cache,
            max_train_examples=max_train_examples)
        examples = _Examples(source="tfds", num_classes=streams.num_classes,
                             class_names=streams.class_names, input_shape=streams.input_shape,
                             stats=streams.stats, counts=streams.counts, streams=streams)
    else:
        examples = _in_memory(dataset, source, path, image_size=image_size,
                              validation_fraction=validation_fraction,
                              num_classes=num_classes,
                              max_train_examples=max_train_examples,
                              synthetic_options=synthetic_options, pipeline=pipeline)
    return _assemble(dataset, examples, batch_size=batch_size,
                     eval_batch_size=eval_batch_size, augment=augment, seed=seed,
                     crop_padding=crop_padding, horizontal_flip=horizontal_flip,
                     shuffle_buffer=shuffle_buffer, deterministic=deterministic,
                     pipeline=pipeline, workers=workers)
