"""Tiny students and hand-made method batches for the distill tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

from tests import students
from tests.students import IMAGE_SHAPE, arrays  # noqa: F401


def dense_student(num_classes: int = 3, seed: int = 0) -> keras.Model:
    """Flatten + Dense: deterministic logits (no BatchNorm), for exact checks."""
    inputs = keras.Input(IMAGE_SHAPE)
    hidden = keras.layers.Flatten()(inputs)
    outputs = keras.layers.Dense(
        num_classes, kernel_initializer=keras.initializers.GlorotUniform(seed))(hidden)
    return keras.Model(inputs, outputs)


def conv_student(num_classes: int = 12, seed: int = 0) -> keras.Model:
    """Conv + BatchNorm + Dense (`tests.students.conv_student`), 12 classes by default."""
    return students.conv_student(num_classes, seed)


def features(kind: str, images, views, ids=None) -> dict | np.ndarray:
    if kind == "none":
        return images
    if kind == "dlb":
        return {"image": images, "image_view1": views}
    if kind == "cskd":
        return {"image": images, "pair_image": views}
    if kind == "pskd":
        return {"image": images, "example_id": np.arange(len(images)) if ids is None else ids}
    raise ValueError(kind)


def dataset(kind: str, num_examples: int = 16, batch_size: int = 4, num_classes: int = 3,
            seed: int = 0) -> tf.data.Dataset:
    """Unshuffled batches of `kind`; batch i holds examples [i*b, (i+1)*b)."""
    images, views, labels = arrays(num_examples, num_classes, seed)
    return tf.data.Dataset.from_tensor_slices(
        (features(kind, images, views), labels)).batch(batch_size, drop_remainder=True)
