"""The TF-free input path: in-memory arrays as `keras.utils.PyDataset` batches.

On backends other than TensorFlow (JAX), in-memory sources (idx, npz, folder,
synthetic) feed `fit` through these classes instead of tf.data, with the same
semantics as method_batches.py (DESIGN.md, `epsd_tf.data`, "Two input paths"):

* `TrainBatches(kind=...)`: a seeded permutation of all examples per epoch,
  `len = num_train // batch_size` (drop_remainder), each batch augmented in
  numpy (numpy_augment.py) with a Generator seeded by `(seed, epoch, batch)`,
  so a batch is the same whichever worker thread builds it, the same seed
  gives the same batches, and every epoch gets new crops, flips and partners.
  Kinds: "plain" `(x, y)`; "two_views" `({"image", "image_view1"}, y)` (DLB:
  two independent augmentations); "class_pairs" `({"image", "pair_image"}, y)`
  (CS-KD: the partner is uniform over the *other* examples of the class, from
  exact per-class tables, as on the tf.data path); "example_ids"
  `({"image", "example_id"}, y)` (PS-KD).
* `EvalBatches`: normalised, un-augmented, last partial batch kept.

The epoch is an `EpochClock`'s (`clock=`, also a callback of `fit`: epoch e
draws the same batches in an uninterrupted and a resumed run; `skip(n)` gives
the rest of an interrupted epoch) or, without a clock, the batches' own count,
advanced by Keras' `on_epoch_end` (its enqueuer is stopped first, so no batch
of the next epoch is built early) and starting at 0 in each process, as
tf.data's `rerandomize_each_iteration` does. Workers are threads: numpy
releases the GIL in the copies and arithmetic that dominate.
"""

from __future__ import annotations

import threading

import keras
import numpy as np

# Same names as method_batches.BATCH_KINDS (that module is the one table).
_KINDS = ("plain", "two_views", "class_pairs", "example_ids")
# Generator stream tag: keeps the batch seeds apart from the permutation seeds.
_BATCH_STREAM, _ORDER_STREAM = 1, 0


class TrainBatches(keras.utils.PyDataset):
    """Training batches of one batch kind from in-memory arrays (module doc).

    Args:
        images: stored training images, uint8 `[N, h, w, C]`.
        labels: int labels `[N]`.
        kind: one of "plain", "two_views", "class_pairs", "example_ids".
        batch_size: examples per batch (the remainder of an epoch is dropped).
        preprocess: a `NumpyPreprocessor` (augments and normalises).
        seed: seeds the permutations, augmentations and partners.
        num_classes: number of classes (for the CS-KD partner tables).
        workers: threads building batches ahead of the training step (1: in
            the training thread).
        max_queue_size: batches built ahead when `workers > 1`.
        clock: an `EpochClock` whose `epoch` keys the batches; None counts
            epochs with `on_epoch_end`.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, *, kind: str,
                 batch_size: int, preprocess, seed: int, num_classes: int,
                 workers: int = 1, max_queue_size: int = 16, clock=None):
        super().__init__(workers=int(workers), use_multiprocessing=False,
                         max_queue_size=int(max_queue_size))
        if kind not in _KINDS:
            raise ValueError(f"batch kind {kind!r} unknown; valid: {_KINDS}")
        if not 1 <= batch_size <= len(labels):
            raise ValueError(f"batch_size must be in 1 .. num_train={len(labels)}, "
                             f"got {batch_size}")
        self.images = images
        self.labels = np.asarray(labels, np.int32)
        self.kind = kind
        self.batch_size = int(batch_size)
        self.preprocess = preprocess
        self.seed = int(seed)
        self.clock = clock
        self._own_epoch = 0
        self._orders: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()
        if kind == "class_pairs":
            self._pairs = _PairTable(self.labels, num_classes)

    @property
    def image_shape(self) -> tuple:
        """The model input `(H, W, C)` of the batches."""
        return self.preprocess.image_shape

    @property
    def feature_keys(self) -> tuple:
        """The feature dict's keys (`()` for "plain": features are the images)."""
        return {"plain": (), "two_views": ("image", "image_view1"),
                "class_pairs": ("image", "pair_image"),
                "example_ids": ("image", "example_id")}[self.kind]

    @property
    def epoch(self) -> int:
        """The epoch whose batches `self[i]` returns (the clock's, if any)."""
        return self.clock.epoch if self.clock is not None else self._own_epoch

    def __len__(self) -> int:
        return len(self.labels) // self.batch_size

    def on_epoch_end(self):
        self._own_epoch += 1

    def skip(self, count: int) -> "SkippedBatches":
        """The batches of each epoch after the first `count` (tf.data's `skip`)."""
        return SkippedBatches(self, count)

    def order(self, epoch: int) -> np.ndarray:
        """The example ids of `epoch` in batch order (a seeded permutation)."""
        with self._lock:
            if epoch not in self._orders:
                rng = np.random.default_rng([self.seed, _ORDER_STREAM, epoch])
                self._orders = {epoch: rng.permutation(len(self.labels))}
            return self._orders[epoch]

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        epoch = self.epoch
        ids = self.order(epoch)[index * self.batch_size:(index + 1) * self.batch_size]
        rng = np.random.default_rng([self.seed, _BATCH_STREAM, epoch, int(index)])
        images, labels = self.images[ids], self.labels[ids]
        view0 = self.preprocess(images, True, seed=rng)
        if self.kind == "plain":
            return view0, labels
        if self.kind == "two_views":
            return {"image": view0,
                    "image_view1": self.preprocess(images, True, seed=rng)}, labels
        if self.kind == "class_pairs":
            partners = self._pairs.partners(ids, rng)
            return {"image": view0,
                    "pair_image": self.preprocess(self.images[partners], True, seed=rng)
                    }, labels
        return {"image": view0, "example_id": ids.astype(np.int64)}, labels


class SkippedBatches(keras.utils.PyDataset):
    """`TrainBatches` without each epoch's first `count` batches (resume mid-epoch)."""

    def __init__(self, batches: TrainBatches, count: int):
        super().__init__(workers=batches.workers, use_multiprocessing=False,
                         max_queue_size=batches.max_queue_size)
        if not 0 <= count < len(batches):
            raise ValueError(f"skip count must be in 0 .. {len(batches) - 1}, got {count}")
        self.batches, self.count = batches, int(count)
        self.batch_size = batches.batch_size

    def __len__(self) -> int:
        return len(self.batches) - self.count

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        return self.batches[index + self.count]

    def on_epoch_end(self):
        self.batches.on_epoch_end()


class _PairTable:
    """CS-KD partners: uniform over the other `n_c - 1` examples of each class."""

    def __init__(self, labels: np.ndarray, num_classes: int):
        counts = np.bincount(labels, minlength=num_classes)
        singletons = np.flatnonzero(counts == 1)
        if singletons.size:
            raise ValueError(
                f"class_pairs (CS-KD) needs >= 2 training examples per class; classes "
                f"{singletons.tolist()} have exactly 1 (counts {counts.tolist()})")
        self.labels = labels
        self.order = np.argsort(labels, kind="stable")  # ids sorted by class
        self.counts = counts
        self.starts = np.cumsum(counts) - counts
        self.position = np.empty(len(labels), np.int64)  # rank of each id in its class
        self.position[self.order] = np.arange(len(labels)) - self.starts[labels[self.order]]

    def partners(self, ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        labels = self.labels[ids]
        # r uniform in [0, n_c - 1), then skip over the example's own rank.
        offsets = np.floor(rng.random(len(ids)) * (self.counts[labels] - 1)).astype(np.int64)
        offsets += offsets >= self.position[ids]
        return self.order[self.starts[labels] + offsets]


class EvalBatches(keras.utils.PyDataset):
    """Validation/test batches `(float32 images, int32 labels)`, in order.

    Normalised, not augmented; the last partial batch is kept.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, *, batch_size: int,
                 preprocess):
        super().__init__(workers=1, use_multiprocessing=False)
        self.images = images
        self.labels = np.asarray(labels, np.int32)
        self.batch_size = int(batch_size)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.preprocess(self.images[rows], False), self.labels[rows]


class ArrayExamples:
    """Unbatched, un-augmented training examples of the numpy path, in id order.

    Iterates `{"image": uint8 [h, w, C], "label": int32, "example_id": int64}`
    like `DataSplits.train_examples` on the tf.data path.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images = images
        self.labels = np.asarray(labels, np.int32)

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self):
        for i in range(len(self.labels)):
            yield {"image": self.images[i], "label": self.labels[i],
                   "example_id": np.int64(i)}

    as_numpy_iterator = __iter__
