"""TensorFlow half of the training seam of `SelfDistillationModel`.

Keras' TF trainer calls `train_step(data)` inside a `tf.function` (per replica
under `tf.distribute`); variables are updated in place.
"""

from __future__ import annotations

import tensorflow as tf
from keras import tree


def training_forward(student):
    """The student in training mode (DLB's two forwards stay two calls on TF)."""

    def forward(images):
        return student(images, training=True)

    return forward


def train_step(model, data) -> dict:
    """Gradient of `model.sd_loss` by `tf.GradientTape`, then the optimizer update."""
    features, labels = model.unpack_batch(data)
    with tf.GradientTape() as tape:
        scaled, parts = model.sd_loss(features, labels)
    variables = model.trainable_variables
    gradients = tape.gradient(scaled, variables)
    model.optimizer.apply_gradients(zip(gradients, variables))
    return _reducible(model.finish_train_step(features, labels, parts))


def test_step(model, data) -> dict:
    """Evaluation on one batch (stateful; no seam needed on TF)."""
    return _reducible(model.evaluate_batch(data))


def _reducible(logs: dict) -> dict:
    """Logs that Keras can reduce over the replicas of the current strategy.

    Under `MultiWorkerMirroredStrategy`, Keras 3.15's TF trainer averages each
    log value with `strategy.reduce("MEAN", value, axis=0)`, which fails on
    the scalars every train step returns ("Invalid reduction dimension 0 for
    input with 0 dimensions", tensorflow/tensorflow#72388). A `[1]` vector
    reduces to the same scalar mean.
    """
    strategy = tf.distribute.get_strategy()
    if not (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode()):
        return logs
    return {key: tf.reshape(value, [1]) if value.shape.rank == 0 else value
            for key, value in logs.items()}


def maybe_symbolic_build(model, iterator=None, data_batch=None) -> None:
    """Keras' `_maybe_symbolic_build` without its cross-replica reduce of a batch.

    Under a strategy, Keras 3.15's TF trainer builds metrics and optimizer from
    the first batch, which it first averages over replicas with
    `strategy.reduce`; `MultiWorkerMirroredStrategy` cannot reduce a nested
    batch (the feature dicts of DLB, CS-KD and PS-KD) and fails. The build only
    needs a per-replica batch's shapes, so this takes the first replica's local
    values instead (no communication).
    """
    strategy = model._distribute_strategy  # None: built outside any strategy scope
    if strategy is None:
        return
    if iterator is not None:
        for _, _, batches in iterator:
            data_batch = tree.map_structure(
                lambda value: (strategy.experimental_local_results(value)[0]
                               if isinstance(value, tf.distribute.DistributedValues)
                               else value),
                next(batches))
            break
    with strategy.scope():
        model._symbolic_build(data_batch=data_batch)
