"""Tiny students and method batches for the JAX suite (TensorFlow-free)."""

import keras
import numpy as np

from tests.students import IMAGE_SHAPE, arrays, conv_student  # noqa: F401

NUM_CLASSES = 3


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
