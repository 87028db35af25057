"""Training batches in the shape each self-distillation method needs.

`for_method(splits, method)` reads `method.batch_kind` (the table is
epsd_tf/distill/batch_kinds.py):

* "plain": `(images, labels)` — cross-entropy, PS-KD-free baselines.
* "two_views": `({"image": view0, "image_view1": view1}, labels)` — DLB (Shen
  et al., CVPR 2022): two independent augmentations of the same example.
* "class_pairs": `({"image": x, "pair_image": x_pair}, labels)` — CS-KD (Yun et
  al., CVPR 2020): `x_pair` is a *different* random example of the same class.
* "example_ids": `({"image": x, "example_id": int64 ids}, labels)` — PS-KD (Kim
  et al., ICCV 2021) indexes its table of past predictions by example id.

Images are float32 `[B, H, W, C]`, normalised and augmented; labels int32 `[B]`;
every kind uses a fixed batch size with `drop_remainder=True`, a seeded order
that changes every epoch, and per-example augmentation that changes every
epoch. Two paths build them (`DataSplits.pipeline`, chosen by `data.load`):
tf.data on TensorFlow (tf_batches.py) and numpy `keras.utils.PyDataset`
batches elsewhere (array_batches.py). This module imports neither TensorFlow
nor the other path.
"""

from __future__ import annotations

from typing import Optional

from epsd_tf.data.splits import DataSplits

# The names of epsd_tf.distill.batch_kinds.BATCH_KINDS, the one table (data/ must
# not import distill/; tests/distill/test_batch_kinds.py keeps the two equal and
# checks that `for_method` yields exactly each kind's feature keys).
BATCH_KINDS = ("plain", "two_views", "class_pairs", "example_ids")


def batch_kind(method) -> str:
    """The batch kind of a method object (anything with `batch_kind`) or a kind name."""
    kind = method if isinstance(method, str) else getattr(method, "batch_kind", None)
    if kind not in BATCH_KINDS:
        raise ValueError(
            f"Cannot tell the batch kind of {method!r}; pass a self-distillation "
            f"method object (epsd_tf.distill.methods.get(name)) or one of {BATCH_KINDS}")
    return kind


def for_method(splits: DataSplits, method, *, batch_size: Optional[int] = None,
               seed: Optional[int] = None, epoch=None):
    """Training batches for `method.batch_kind` (DESIGN.md, `epsd_tf.data`).

    Args:
        splits: from `data.load`.
        method: a self-distillation method object (its `batch_kind` is read)
            or a batch kind name ("plain", "two_views", "class_pairs", "example_ids").
        batch_size: examples per batch; default `splits.batch_size`.
        seed: shuffle/augmentation/pairing seed; default `splits.seed`.
        epoch: an `EpochClock` (also passed to `fit` as a callback): each
            iteration then draws the order and augmentation of the clock's
            epoch, so a resumed run sees the same batches per epoch (in-memory
            sources; streamed ones reshuffle per iteration). None: every
            iteration reshuffles (tf.data's per-iteration seeds; the numpy
            batches' own epoch count).

    Returns:
        Batches of `(features, labels int32 [B])`, not repeated,
        `drop_remainder=True`: a prefetched `tf.data.Dataset` on the tf.data
        path, an `array_batches.TrainBatches` (`keras.utils.PyDataset`) on the
        numpy path.

    Raises:
        ValueError: unknown kind, batch size not in `1 .. num_train`, or (for
            "class_pairs") a class with a single example.
    """
    kind = batch_kind(method)
    batch_size = splits.batch_size if batch_size is None else int(batch_size)
    seed = splits.seed if seed is None else int(seed)
    if not 1 <= batch_size <= splits.info.num_train:
        raise ValueError(
            f"batch_size must be in 1 .. num_train={splits.info.num_train} "
            f"(train batches drop the remainder), got {batch_size}")
    if splits.pipeline == "numpy":
        from epsd_tf.data import array_batches

        images, labels = splits.train_arrays
        return array_batches.TrainBatches(
            images, labels, kind=kind, batch_size=batch_size, preprocess=splits.preprocess,
            seed=seed, num_classes=splits.info.num_classes, workers=splits.workers,
            clock=epoch)
    from epsd_tf.data import tf_batches

    return tf_batches.for_method(splits, kind, batch_size, seed, epoch)
