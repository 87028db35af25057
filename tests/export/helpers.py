"""Tiny models, data and sparse training shared by the export tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

IMAGE_SHAPE = (12, 12, 3)
NUM_CLASSES = 4
SPARSITY = 0.9


def synthetic_data(count: int, seed: int):
    """Learnable by a pooled CNN: class c < 3 brightens channel c, class 3 darkens all.

    Returns:
        (images float32 [count, 12, 12, 3], labels int32 [count]).
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, count).astype(np.int32)
    images = rng.normal(0.0, 1.0, (count,) + IMAGE_SHAPE).astype(np.float32)
    for c in range(3):
        images[labels == c, :, :, c] += 1.0
    images[labels == 3] -= 1.0
    return images, labels


def tiny_cnn() -> keras.Model:
    """MobileNet-flavoured: 3x3 stem, BN, 1x1 conv, depthwise, 1x1, GAP, dense."""
    inputs = keras.Input(IMAGE_SHAPE)
    x = keras.layers.Conv2D(24, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(48, 1, activation="relu")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(48, 1, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(NUM_CLASSES)(x)
    return keras.Model(inputs, outputs, name="tiny_cnn")


def prune_randomly(model: keras.Model, sparsity: float, seed: int = 0,
                   by_magnitude: bool = False) -> dict:
    """Zeros a `sparsity` fraction of every prunable kernel; returns the masks.

    Random positions by default; the smallest magnitudes with `by_magnitude`.
    """
    from epsd_tf.pruning import get_prunable_weights

    rng = np.random.default_rng(seed)
    masks = {}
    for name, variable in get_prunable_weights(model).items():
        values = keras.ops.convert_to_numpy(variable).reshape(-1)
        order = np.argsort(np.abs(values)) if by_magnitude else rng.permutation(values.size)
        mask = np.ones(values.size, np.float32)
        mask[order[: int(round(sparsity * values.size))]] = 0
        masks[name] = mask.reshape(variable.shape)
        variable.assign(keras.ops.convert_to_numpy(variable) * masks[name])
    return masks


class _KeepMasks(keras.callbacks.Callback):
    """Re-applies fixed masks after every step (what the pruning wrapper does)."""

    def __init__(self, masks):
        super().__init__()
        self.masks = masks

    def on_train_batch_end(self, batch, logs=None):
        from epsd_tf.pruning import get_prunable_weights

        for name, variable in get_prunable_weights(self.model).items():
            variable.assign(keras.ops.convert_to_numpy(variable) * self.masks[name])


def train_sparse(model: keras.Model, images, labels, epochs: int = 3) -> dict:
    """Trains `model`, magnitude-prunes it to SPARSITY, fine-tunes with fixed masks."""
    keras.utils.set_random_seed(0)
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(images, labels, batch_size=32, epochs=epochs, verbose=0)
    masks = prune_randomly(model, SPARSITY, by_magnitude=True)
    model.fit(images, labels, batch_size=32, epochs=epochs, verbose=0,
              callbacks=[_KeepMasks(masks)])
    return masks
