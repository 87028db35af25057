"""Tiny stand-in data for the examples: a learnable 4-class `.npz` file.

Your own data goes in the same format (`x_train, y_train, x_test, y_test`,
uint8 images [N, H, W, C] and integer labels 0..K-1), or use any other source of
`epsd_tf.data.load` (TFDS names, IDX files, an image folder).
"""

import numpy as np


def write_toy_npz(path: str, train: int = 512, test: int = 128, seed: int = 0) -> str:
    """Writes 16x16x3 images: class c < 3 brightens channel c, class 3 is dark
    (classes that survive the crop-and-flip augmentation)."""
    rng = np.random.default_rng(seed)

    def split(count):
        labels = rng.permutation(np.arange(count) % 4).astype(np.int64)  # every class present
        images = rng.integers(40, 160, (count, 16, 16, 3))
        for c in range(3):
            images[labels == c, :, :, c] += 90
        images[labels == 3] -= 40
        return images.astype(np.uint8), labels

    x_train, y_train = split(train)
    x_test, y_test = split(test)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path
