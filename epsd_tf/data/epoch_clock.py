"""`EpochClock`: the epoch a training pipeline draws its order and augmentation for.

tf.data's seeded `shuffle(..., reshuffle_each_iteration=True)` gives the k-th
*iteration* of a dataset object the k-th order, and Keras' `fit` iterates a
dataset more often than once per epoch (one batch to build metrics at the
first `fit`, an iterator made ahead at each epoch's end). A resumed run
therefore cannot reproduce epoch e's batches by counting iterations. With a
clock, `for_method(..., epoch=clock)` draws each iteration's order and
augmentation seeds from `(seed, clock epoch)` instead, and the clock, as a
callback of `fit`, sets that epoch at each epoch's start — so epoch e sees
the same batches in an uninterrupted run and in a resumed one (issue 12,
defect 6). The numpy pipeline (array_batches.py) reads the clock's `epoch`
the same way; its `tf.Variable`, which the tf.data pipeline reads inside its
graph, is made only when that pipeline asks for it, so this module imports
no TensorFlow.
"""

from __future__ import annotations

import keras


class EpochClock(keras.callbacks.Callback):
    """A `fit` callback holding the current epoch in a variable the pipeline reads.

    Use it with `fit(..., steps_per_epoch=None)` (one fresh iteration per
    epoch); with a `steps_per_epoch` cap Keras keeps one iterator across
    epochs and may create it before the epoch starts.
    """

    def __init__(self, epoch: int = 0):
        super().__init__()
        self.epoch = int(epoch)
        self._variable = None

    @property
    def variable(self):
        """The epoch as a `tf.Variable` (int64), for the tf.data pipeline."""
        if self._variable is None:
            import tensorflow as tf

            self._variable = tf.Variable(self.epoch, dtype=tf.int64, trainable=False,
                                         name="data_epoch")
        return self._variable

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = int(epoch)
        if self._variable is not None:
            self._variable.assign(epoch)
