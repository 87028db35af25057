"""TF-free tiny students and arrays shared by the distill (TF) and JAX suites."""

import keras
import numpy as np

IMAGE_SHAPE = (4, 4, 1)


def conv_student(num_classes: int = 3, seed: int = 0) -> keras.Model:
    """Conv + BatchNorm + Dense: the layer kinds of the real networks."""
    inputs = keras.Input(IMAGE_SHAPE)
    hidden = keras.layers.Conv2D(
        4, 3, padding="same", kernel_initializer=keras.initializers.HeNormal(seed))(inputs)
    hidden = keras.layers.BatchNormalization()(hidden)
    hidden = keras.layers.ReLU()(hidden)
    hidden = keras.layers.GlobalAveragePooling2D()(hidden)
    outputs = keras.layers.Dense(
        num_classes, kernel_initializer=keras.initializers.GlorotUniform(seed))(hidden)
    return keras.Model(inputs, outputs)


def arrays(num_examples: int = 16, num_classes: int = 3, seed: int = 0):
    """Random images and second views `[n, 4, 4, 1]`, labels `i % num_classes`."""
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(num_examples, *IMAGE_SHAPE)).astype("float32")
    views = rng.normal(size=(num_examples, *IMAGE_SHAPE)).astype("float32")
    labels = (np.arange(num_examples) % num_classes).astype("int32")
    return images, views, labels
