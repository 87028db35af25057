"""TensorFlow half of the training seam of `SelfDistillationModel`.

Keras' TF trainer calls `train_step(data)` inside a `tf.function` (per replica
under `tf.distribute`); variables are updated in place.
"""

from __future__ import annotations

import tensorflow as tf


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
    return model.finish_train_step(features, labels, parts)


def test_step(model, data) -> dict:
    """Evaluation on one batch (stateful; no seam needed on TF)."""
    return model.evaluate_batch(data)
