"""Tiny models and hand-made batches shared by the pruning tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

NUM_CLASSES = 5


def small_cnn(seed: int = 0, input_shape=(8, 8, 3)) -> keras.Model:
    """Conv-BN-ReLU x2, a separable conv, global pooling, Dense (Functional)."""
    keras.utils.set_random_seed(seed)
    x = keras.Input(input_shape)
    h = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(x)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.Conv2D(12, 3, padding="same", name="conv2")(h)
    h = keras.layers.BatchNormalization(name="bn2")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.SeparableConv2D(16, 3, padding="same", name="sep")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    y = keras.layers.Dense(NUM_CLASSES, name="fc")(h)
    return keras.Model(x, y, name="small_cnn")


def tiny_cnn(seed: int = 0, input_shape=(8, 8, 3)) -> keras.Model:
    """Conv-BN-ReLU, global pooling, Dense: the cheapest graph for meta-gradients."""
    keras.utils.set_random_seed(seed)
    x = keras.Input(input_shape)
    h = keras.layers.Conv2D(6, 3, padding="same", name="conv")(x)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    y = keras.layers.Dense(NUM_CLASSES, name="fc")(h)
    return keras.Model(x, y, name="tiny_cnn")


def images(batch: int = 8, seed: int = 0, shape=(8, 8, 3)) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, *shape)).astype("float32")


def labels(batch: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + 1000).integers(0, NUM_CLASSES, batch).astype("int32")


def batches(kind: str = "plain", count: int = 4, batch: int = 8, shape=(8, 8, 3)) -> list:
    """`count` `(x, y)` batches of a method's batch kind (see distill/methods.py)."""
    out = []
    for i in range(count):
        x, y = images(batch, i, shape), labels(batch, i)
        if kind == "two_views":
            x = {"image": x, "image_view1": images(batch, 100 + i, shape)}
        elif kind == "class_pairs":
            x = {"image": x, "pair_image": images(batch, 200 + i, shape)}
        elif kind == "example_ids":
            x = {"image": x, "example_id": np.arange(i * batch, (i + 1) * batch)}
        out.append((x, y))
    return out
