"""Seeded synthetic image classification data that a small CNN can learn.

Each class has a fixed smooth random pattern (a coarse random grid, upsampled
by pixel repetition so that it survives random crops of a few pixels); every
example is its class pattern with a random contrast plus Gaussian pixel noise.
Tiny by default so that tests across the project stay fast.
"""

from __future__ import annotations

import numpy as np

from epsd_tf.data.arrays import ArraySplits

OPTIONS = ("num_examples", "num_test", "image_shape", "num_classes", "noise",
           "data_seed")


def make_synthetic(num_examples: int = 256, num_test: int = 128,
                   image_shape: tuple = (16, 16, 3), num_classes: int = 4,
                   noise: float = 0.15, data_seed: int = 0) -> ArraySplits:
    """Builds train and test splits of class patterns plus noise.

    Args:
        num_examples: training examples (before any validation carve-out).
        num_test: test examples.
        image_shape: `(H, W, C)`, `C` in {1, 3}.
        num_classes: number of classes (>= 2); labels cycle so every class has
            about the same number of examples.
        noise: pixel noise standard deviation on the 0–1 scale (patterns have
            amplitude ~0.25).
        data_seed: seed of the patterns and the noise (independent of the
            training seed, so every run sees the same data).

    Raises:
        ValueError: a non-positive size or fewer than 2 classes.
    """
    height, width, channels = (int(d) for d in image_shape)
    if min(num_examples, num_test, height, width) < 1 or channels not in (1, 3):
        raise ValueError(
            f"synthetic needs num_examples, num_test, H, W >= 1 and C in (1, 3); got "
            f"num_examples={num_examples}, num_test={num_test}, image_shape={image_shape}")
    if num_classes < 2:
        raise ValueError(f"synthetic needs num_classes >= 2, got {num_classes}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    rng = np.random.default_rng(data_seed)
    # Coarse grid: cells of ~4 px, so a 2–4 px crop shift keeps the pattern.
    cell = max(1, min(height, width) // 4)
    grid = (-(-height // cell), -(-width // cell))
    coarse = rng.normal(size=(num_classes, *grid, channels))
    patterns = np.repeat(np.repeat(coarse, cell, axis=1), cell, axis=2)
    patterns = patterns[:, :height, :width]  # [classes, H, W, C]

    def split(count: int):
        labels = (np.arange(count) % num_classes).astype(np.int32)
        rng.shuffle(labels)
        contrast = rng.uniform(0.7, 1.3, size=(count, 1, 1, 1))
        pixels = 0.5 + 0.25 * contrast * patterns[labels] + noise * rng.normal(
            size=(count, height, width, channels))
        images = np.clip(np.round(pixels * 255.0), 0, 255).astype(np.uint8)
        return images, labels

    return ArraySplits(*split(num_examples), *split(num_test), num_classes=num_classes)
