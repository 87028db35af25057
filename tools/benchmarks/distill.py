"""Self-distillation training overhead: each SD method against stock `model.fit`.

ResNet-20 on 28x28x1 inputs, 10 classes, batch B = 64, in-memory batches. Each
method is timed side by side with stock `keras.Model.fit` (CE loss, same
optimizer) pushing the same number of images through the network per step:

  none   B images   vs stock fit on batches of B
  dlb    2B images in two forward passes of B (view 0 of x_t, then view 1 of
         x_{t-1}, each with its own BatchNorm statistics as in the official
         code; both with gradient) vs stock fit on one batch of 2B
  cskd   2B images (B partner images forward-only + B with gradient) vs stock
         fit on batches of 2B (which also back-propagates the second B, so a
         ratio below 1 is expected)
  pskd   B images + table gather/scatter vs stock fit on batches of B

`overhead` = median over rounds of (method epoch seconds / stock epoch seconds)
for epochs run back to back, alternating which goes first, so that machine
load affects both sides alike (target <= 1.15); images/s use median epochs.
"""

import time

import keras
import numpy as np
import tensorflow as tf

from epsd_tf import models, optim
from epsd_tf.distill.model import SelfDistillationModel

BATCH_SIZE = 64
IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
METHODS = ("none", "dlb", "cskd", "pskd")
TARGET = 1.15


def _arrays(num_examples: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(num_examples, *IMAGE_SHAPE)).astype("float32")
    views = rng.normal(size=(num_examples, *IMAGE_SHAPE)).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, num_examples).astype("int32")
    return images, views, labels


def _method_batches(method: str, images, views, labels) -> tf.data.Dataset:
    features = {
        "none": images,
        "dlb": {"image": images, "image_view1": views},
        "cskd": {"image": images, "pair_image": views},
        "pskd": {"image": images, "example_id": np.arange(len(images))},
    }[method]
    return (tf.data.Dataset.from_tensor_slices((features, labels))
            .batch(BATCH_SIZE, drop_remainder=True).cache())


def _stock_batches(method: str, images, views, labels) -> tf.data.Dataset:
    if method in ("dlb", "cskd"):  # 2B images per step through the network
        x = np.concatenate([images.reshape(-1, BATCH_SIZE, *IMAGE_SHAPE),
                            views.reshape(-1, BATCH_SIZE, *IMAGE_SHAPE)], axis=1)
        y = np.concatenate([labels.reshape(-1, BATCH_SIZE)] * 2, axis=1)
        return tf.data.Dataset.from_tensor_slices((x, y)).cache()
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(
        BATCH_SIZE, drop_remainder=True).cache()


def _optimizer(steps: int):
    return optim.make_optimizer(learning_rate=0.05, momentum=0.9, nesterov=True,
                                     weight_decay=5e-4, steps_per_epoch=steps, epochs=100)


def _epoch_seconds(model, batches) -> float:
    start = time.perf_counter()
    model.fit(batches, epochs=1, verbose=0)
    return time.perf_counter() - start


def _compare(method: str, steps: int, rounds: int) -> dict:
    images, views, labels = _arrays(steps * BATCH_SIZE)
    student = models.build("resnet20", IMAGE_SHAPE, NUM_CLASSES)
    trainer = SelfDistillationModel(student, method, batch_size=BATCH_SIZE,
                                    num_examples=len(images), epochs=1)
    trainer.compile(optimizer=_optimizer(steps))
    stock = models.build("resnet20", IMAGE_SHAPE, NUM_CLASSES)
    stock.compile(optimizer=_optimizer(steps),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ours = _method_batches(method, images, views, labels)
    theirs = _stock_batches(method, images, views, labels)
    _epoch_seconds(trainer, ours)  # trace, warm up, fill the cache
    _epoch_seconds(stock, theirs)
    method_seconds, stock_seconds = [], []
    for index in range(rounds):
        # Alternate which side goes first so that neither always runs second.
        pair = [(trainer, ours, method_seconds), (stock, theirs, stock_seconds)]
        for model, batches, seconds in (pair if index % 2 == 0 else pair[::-1]):
            seconds.append(_epoch_seconds(model, batches))
    images_per_step = BATCH_SIZE * (2 if method in ("dlb", "cskd") else 1)
    method_step = float(np.median(method_seconds)) / steps
    stock_step = float(np.median(stock_seconds)) / steps
    # Ratios of epochs measured back to back share the machine's load.
    overhead = float(np.median(np.array(method_seconds) / np.array(stock_seconds)))
    return {
        "network_images_per_step": images_per_step,
        "method_images_per_second": images_per_step / method_step,
        "stock_images_per_second": images_per_step / stock_step,
        "overhead": overhead,
        "overhead_of_fastest_epochs": min(method_seconds) / min(stock_seconds),
        "within_target": overhead <= TARGET,
    }


def run(quick: bool = False) -> dict:
    """Returns per-method images/s and overhead against stock `model.fit`."""
    steps, rounds = (6, 3) if quick else (10, 9)
    results = {"batch_size": BATCH_SIZE, "model": "resnet20", "image_shape": IMAGE_SHAPE,
               "steps_per_epoch": steps, "rounds": rounds, "target_overhead": TARGET}
    for method in METHODS:
        results[method] = _compare(method, steps, rounds)
    return results
