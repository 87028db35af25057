"""Tiny students and method batches for the JAX suite (TensorFlow-free)."""

import keras
import numpy as np

IMAGE_SHAPE = (4, 4, 1)
NUM_CLASSES = 3


def conv_student(num_classes: int = NUM_CLASSES, seed: int = 0) -> keras.Model:
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


def arrays(num_examples: int = 16, num_classes: int = NUM_CLASSES, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(num_examples, *IMAGE_SHAPE)).astype("float32")
    views = rng.normal(size=(num_examples, *IMAGE_SHAPE)).astype("float32")
    labels = (np.arange(num_examples) % num_classes).astype("int32")
    return images, views, labels


def features(kind: str, images, views, ids) -> dict:
    extra = {"dlb": {"image_view1": views}, "cskd": {"pair_image": views},
             "pskd": {"example_id": ids}, "none": {}}[kind]
    return {"image": images, **extra}


class MethodBatches(keras.utils.PyDataset):
    """Unshuffled fixed-size batches of `kind`; batch i holds examples [i*b, (i+1)*b)."""

    def __init__(self, kind: str, num_examples: int = 16, batch_size: int = 4,
                 num_classes: int = NUM_CLASSES, seed: int = 0):
        super().__init__()
        self.kind, self.batch_size = kind, batch_size
        self.images, self.views, self.labels = arrays(num_examples, num_classes, seed)
        self.ids = np.arange(num_examples, dtype="int32")

    def __len__(self):
        return len(self.labels) // self.batch_size

    def __getitem__(self, index):
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return (features(self.kind, self.images[rows], self.views[rows], self.ids[rows]),
                self.labels[rows])
