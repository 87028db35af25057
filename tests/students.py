"""TF-free test pieces shared by the distill (TF) and JAX suites: tiny students,
arrays, and a callback that records the method state and can crash `fit`."""

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


class Crash(Exception):
    """Raised by `StateRecorder` at `crash_at` to interrupt `fit`."""


class StateRecorder(keras.callbacks.Callback):
    """Snapshots the method state after batches / at train start; can crash."""

    def __init__(self, crash_at=None):
        super().__init__()
        self.crash_at = crash_at
        self.after_batch, self.at_start, self.epochs = None, None, []
        self._epoch = None

    def _state(self):
        return [np.array(v.numpy()) for v in self.model.method_step.variables]

    def on_train_begin(self, logs=None):
        self.at_start = self._state()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self.epochs.append(epoch)

    def on_train_batch_begin(self, batch, logs=None):
        if (self._epoch, batch) == self.crash_at:
            raise Crash()

    def on_train_batch_end(self, batch, logs=None):
        self.after_batch = self._state()
