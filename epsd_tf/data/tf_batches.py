"""The tf.data path of `for_method` (method_batches.py): batches on TensorFlow.

Images are float32 `[B, H, W, C]`, normalised and augmented; labels int32 `[B]`;
every kind uses a fixed batch size with `drop_remainder=True`, a seeded shuffle
that changes every epoch, and stateless augmentation seeds (see augment.py).

CS-KD partners. In-memory sources use exact per-class index tables: the
partner of example `i` of class `c` is uniform over the other `n_c - 1`
examples of `c`. Streamed sources (TFDS) cannot be indexed at random, so the
shuffled stream is grouped per class into windows of `w` examples
(`tf.data.Dataset.group_by_window`, at most `w - 1` images buffered per class)
and each example's partner is uniform over the other `w - 1` of its window;
`w` is the largest value in [2, 16] whose buffers fit in 256 MB **[ours]**.
A class's last example of an epoch that has no window-mate is not used as an
anchor in that epoch (a different one each epoch, since the stream is
reshuffled).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf
from absl import logging

from epsd_tf.data.splits import DataSplits

# Memory budget of the per-class windows of streamed CS-KD pairing.
PAIR_BUFFER_BYTES = 256 * 2**20
MAX_PAIR_WINDOW = 16
# Shuffle buffer (pairs) that mixes the same-class runs the windows leave.
_PAIR_MIX_BUFFER = 256
# Offset between the shuffle seed and the augmentation-seed stream.
_AUGMENT_SEED_OFFSET = 7919


def _epoch_keyed_examples(splits: DataSplits, seed: int, epoch) -> tf.data.Dataset:
    """In-memory `(example dict, element seed [2])` in the order of epoch `epoch`.

    `epoch` (an `EpochClock`) is read at the start of every iteration: the
    order is a stateless permutation keyed by `(seed, epoch)` and element `i`
    gets the augmentation seed `(seed + offset, epoch * N + i)`, so an epoch's
    batches do not depend on how often the pipeline was iterated before.
    """
    variable = epoch.variable  # made here, eagerly, not inside the tf.data function
    images = tf.constant(splits.train_arrays[0])  # uint8 [N, h, w, C]
    labels = tf.constant(splits.train_arrays[1])  # int32 [N]
    count = len(splits.train_arrays[1])

    def one_epoch(_):
        current = tf.convert_to_tensor(variable)
        order = tf.random.experimental.stateless_shuffle(
            tf.range(count, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), current]))
        examples = tf.data.Dataset.from_tensor_slices(order).map(
            lambda i: {"image": tf.gather(images, i), "label": tf.gather(labels, i),
                       "example_id": i})
        seeds = tf.data.Dataset.range(count).map(lambda i: tf.stack(
            [tf.constant(seed + _AUGMENT_SEED_OFFSET, tf.int64), current * count + i]))
        return tf.data.Dataset.zip(examples, seeds)

    return tf.data.Dataset.range(1).flat_map(one_epoch).apply(
        tf.data.experimental.assert_cardinality(count))


def _shuffled_examples(splits: DataSplits, seed: int,
                       streamed: Optional[bool] = None, epoch=None) -> tf.data.Dataset:
    """Shuffled `(example dict, element seed int64 [2])`, reshuffled each epoch.

    In-memory sources shuffle example ids (all of them) and gather images;
    streamed sources shuffle `train_examples` through `splits.shuffle_buffer`.
    With an `EpochClock` (in-memory sources), the order and seeds are those of
    the clock's epoch (`_epoch_keyed_examples`).
    """
    streamed = (not splits.in_memory) if streamed is None else streamed
    if epoch is not None and not streamed:
        return _epoch_keyed_examples(splits, seed, epoch)
    if epoch is not None:
        logging.warning("streamed training data reshuffles per iteration: a resumed run "
                        "does not see the epochs' exact batches (in-memory sources do)")
    if streamed:
        examples = splits.train_examples.shuffle(
            splits.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    else:
        images = tf.constant(splits.train_arrays[0])  # uint8 [N, h, w, C]
        labels = tf.constant(splits.train_arrays[1])  # int32 [N]
        count = len(splits.train_arrays[1])
        examples = tf.data.Dataset.range(count).shuffle(
            count, seed=seed, reshuffle_each_iteration=True).map(
                lambda i: {"image": tf.gather(images, i), "label": tf.gather(labels, i),
                           "example_id": i})
    # One random int64 per element; a new sequence on every iteration (epoch),
    # the same sequence for the same seed.
    seeds = tf.data.Dataset.random(seed=seed + _AUGMENT_SEED_OFFSET,
                                   rerandomize_each_iteration=True).map(
        lambda r: tf.stack([tf.constant(seed, tf.int64), r]))
    return tf.data.Dataset.zip(examples, seeds)


def _check_pairs_possible(splits: DataSplits) -> None:
    counts = splits.train_label_counts()
    if counts is None:
        return
    singletons = np.flatnonzero(counts == 1)
    if singletons.size:
        raise ValueError(
            f"class_pairs (CS-KD) needs >= 2 training examples per class; classes "
            f"{singletons.tolist()} have exactly 1 (counts {counts.tolist()})")


def _table_pairs(splits: DataSplits, stream: tf.data.Dataset) -> tf.data.Dataset:
    """Adds an exact same-class partner to each in-memory example."""
    images_np, labels_np = splits.train_arrays
    order = np.argsort(labels_np, kind="stable")  # ids sorted by class
    counts = np.bincount(labels_np, minlength=splits.info.num_classes)
    starts = np.cumsum(counts) - counts
    position = np.empty(len(labels_np), np.int32)  # rank of each id in its class
    position[order] = np.arange(len(labels_np)) - starts[labels_np[order]]
    images = tf.constant(images_np)
    order_t = tf.constant(order, tf.int64)
    counts_t = tf.constant(counts, tf.int32)
    starts_t = tf.constant(starts, tf.int32)
    position_t = tf.constant(position)

    def add_pair(example, seed):
        pair_seed, seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        label, own = example["label"], example["example_id"]
        # Uniform over the n_c - 1 *other* members: draw r in [0, n_c - 1) and
        # skip over the example's own rank.
        offset = tf.random.stateless_uniform([], pair_seed, 0, counts_t[label] - 1,
                                             dtype=tf.int32)
        offset += tf.cast(offset >= position_t[own], tf.int32)
        pair_id = order_t[starts_t[label] + offset]
        return dict(example, pair_image=tf.gather(images, pair_id), pair_id=pair_id,
                    pair_label=label), seed

    return stream.map(add_pair, num_parallel_calls=tf.data.AUTOTUNE,
                      deterministic=splits.deterministic)


def pair_window(splits: DataSplits) -> int:
    """Per-class window size of streamed CS-KD pairing (see module doc)."""
    image_bytes = int(np.prod(splits.train_examples.element_spec["image"].shape))
    slots = PAIR_BUFFER_BYTES // max(1, splits.info.num_classes * image_bytes)
    return int(np.clip(1 + slots, 2, MAX_PAIR_WINDOW))


def _window_pairs(splits: DataSplits, stream: tf.data.Dataset,
                  seed: int) -> tf.data.Dataset:
    """Pairs same-class examples of a stream within per-class windows."""
    window = pair_window(splits)

    def pair_within(examples, seeds):
        # examples: dict of [k, ...] (k <= window, same label); seeds: [k, 2].
        size = tf.shape(examples["label"])[0]
        # Partner of j: (j + 1 + r_j) mod k with r_j uniform in [0, k - 1).
        shift = tf.random.stateless_uniform([size], seeds[0], 0, tf.maximum(size - 1, 1),
                                            dtype=tf.int32)
        partner = (tf.range(size) + 1 + shift) % size
        paired = dict(examples, pair_image=tf.gather(examples["image"], partner),
                      pair_id=tf.gather(examples["example_id"], partner),
                      pair_label=tf.gather(examples["label"], partner))
        return tf.data.Dataset.from_tensor_slices((paired, seeds))

    grouped = stream.group_by_window(
        key_func=lambda example, seed: tf.cast(example["label"], tf.int64),
        reduce_func=lambda key, windowed: windowed.batch(window),
        window_size=window)
    # Windows of one example (the class's last of the epoch) have no partner.
    paired = grouped.filter(lambda examples, seeds: tf.shape(seeds)[0] >= 2).flat_map(
        pair_within)
    # Windows leave runs of same-class examples; mix them across a few windows.
    return paired.shuffle(_PAIR_MIX_BUFFER, seed=seed + 1, reshuffle_each_iteration=True)


def pair_examples(splits: DataSplits, seed: int = 0,
                  streamed: Optional[bool] = None, epoch=None) -> tf.data.Dataset:
    """Unbatched, un-preprocessed CS-KD pairs `(example dict, seed [2])`.

    The dict holds `image, label, example_id, pair_image, pair_label, pair_id`.
    `streamed` forces the window pairing (default: only for streamed sources).

    Raises:
        ValueError: some class has a single training example (in-memory sources).
    """
    _check_pairs_possible(splits)
    streamed = (not splits.in_memory) if streamed is None else streamed
    stream = _shuffled_examples(splits, seed, streamed, epoch)
    if streamed:
        logging.info("CS-KD pairs from streamed data: per-class windows of %d",
                     pair_window(splits))
        return _window_pairs(splits, stream, seed)
    return _table_pairs(splits, stream)


def for_method(splits: DataSplits, kind: str, batch_size: int, seed: int,
               epoch=None) -> tf.data.Dataset:
    """The tf.data batches of `kind` (arguments checked by `method_batches.for_method`).

    Returns:
        A `tf.data.Dataset` of `(features, labels int32 [B])`, not repeated,
        `drop_remainder=True`, prefetched.
    """
    preprocess = splits.preprocess

    def views(example, seed):
        seed0, seed1 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        return preprocess(example["image"], True, seed=seed0), seed1

    def plain(example, seed):
        return views(example, seed)[0], example["label"]

    def two_views(example, seed):
        view0, seed1 = views(example, seed)
        return ({"image": view0,
                 "image_view1": preprocess(example["image"], True, seed=seed1)},
                example["label"])

    def class_pairs(example, seed):
        view0, seed1 = views(example, seed)
        return ({"image": view0,
                 "pair_image": preprocess(example["pair_image"], True, seed=seed1)},
                example["label"])

    def example_ids(example, seed):
        return ({"image": views(example, seed)[0], "example_id": example["example_id"]},
                example["label"])

    if kind == "class_pairs":
        stream = pair_examples(splits, seed, epoch=epoch)
    else:
        stream = _shuffled_examples(splits, seed, epoch=epoch)
    to_batch = {"plain": plain, "two_views": two_views, "class_pairs": class_pairs,
                "example_ids": example_ids}[kind]
    batches = stream.map(to_batch, num_parallel_calls=tf.data.AUTOTUNE,
                         deterministic=splits.deterministic)
    return batches.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
