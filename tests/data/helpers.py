"""Helpers of the data tests: IDX encoding, id-valued images, decoding ids."""

import gzip
import os

import numpy as np


def idx_bytes(array: np.ndarray) -> bytes:
    """Encodes a uint8 array as an IDX file (magic 0x0000 08 <ndim>)."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def write_idx_dir(directory, gz: bool, num_train: int = 40, num_test: int = 20,
                  size: int = 28, num_classes: int = 10, seed: int = 0) -> dict:
    """Writes the four MNIST-format files; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (num_train, size, size), np.uint8),
        "train-labels-idx1-ubyte": (np.arange(num_train) % num_classes).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (num_test, size, size), np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(num_test) % num_classes).astype(np.uint8),
    }
    os.makedirs(directory, exist_ok=True)
    for stem, array in arrays.items():
        data = idx_bytes(array)
        if gz:
            with gzip.open(os.path.join(directory, stem + ".gz"), "wb") as f:
                f.write(data)
        else:
            with open(os.path.join(directory, stem), "wb") as f:
                f.write(data)
    return arrays


def id_images(num: int, size: int = 8, channels: int = 1) -> np.ndarray:
    """Constant images whose pixel value is `id + 1` (decodable after crops)."""
    return np.broadcast_to((np.arange(num) + 1).astype(np.uint8)[:, None, None, None],
                           (num, size, size, channels)).copy()


def decode_ids(images: np.ndarray, info) -> np.ndarray:
    """Example ids from the centre pixels of normalised id images `[B, H, W, 1]`."""
    centre = images[:, images.shape[1] // 2, images.shape[2] // 2, 0]
    pixels = centre * info.std[0] * 255.0 + info.mean[0] * 255.0
    return np.round(pixels).astype(np.int64) - 1
