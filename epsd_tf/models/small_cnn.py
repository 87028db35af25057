"""A small CNN for tests, demos and Fashion-MNIST smoke runs.

Not from a paper: two `conv3x3-BN-ReLU -> maxpool 2x2` stages, then
`flatten -> Dense(dense_units) ReLU -> Dense(num_classes)` logits. The flatten +
hidden Dense gives a large, easily prunable fully-connected layer next to the
convs, so every prunable layer kind the pruning code handles is exercised.
Parameters (trainable) on 28x28x1 with 10 classes and the defaults: 421,738.

Layers: `block{b}_conv`, `block{b}_bn`, `block{b}_relu`, `block{b}_pool`,
`flatten`, `fc`, `fc_relu`, `logits`.
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import layers

from epsd_tf.models import blocks


def small_cnn(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    filters: Sequence[int] = (32, 64),
    dense_units: int = 128,
) -> keras.Model:
    """Builds the small CNN.

    Args:
        input_shape: `(H, W, C)`.
        num_classes: number of logits.
        filters: conv channels per stage; one stage (and one 2x2 max pool) each.
        dense_units: width of the hidden Dense layer (> 0).
    """
    filters = tuple(filters)
    if not filters or not all(isinstance(f, int) and f > 0 for f in filters):
        raise ValueError(f"small_cnn: filters must be a non-empty sequence of positive ints, "
                         f"got {filters!r}")
    if isinstance(dense_units, bool) or not isinstance(dense_units, int) or dense_units <= 0:
        raise ValueError(f"small_cnn: dense_units must be a positive int, got {dense_units!r}")
    shape = blocks.check_arguments("small_cnn", input_shape, num_classes,
                                   num_downsamplings=len(filters))
    inputs = keras.Input(shape=shape, name="image")
    x = inputs
    for block, width in enumerate(filters, start=1):
        x = blocks.conv_bn_relu(x, width, 3, 1, f"block{block}")
        x = layers.MaxPooling2D(2, strides=2, padding="same", name=f"block{block}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense_units, name="fc")(x)
    x = layers.ReLU(name="fc_relu")(x)
    logits = layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return blocks.functional_model(inputs, logits, "small_cnn")
