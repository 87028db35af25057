"""In-memory splits: validation of numpy arrays, the validation carve-out,
normalisation statistics and the `.npz` source.

Every in-memory source (idx, npz, folder, synthetic) produces an `ArraySplits`
with uint8 images `[N, H, W, C]` and int32 labels `[N]`, checked here once
before any pipeline is built.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import numpy as np

# The carve-out permutation is fixed (not the training seed) so that every run
# and every seed of a sweep validates on the same examples.
_VALIDATION_CARVE_SEED = 20240202


@dataclasses.dataclass
class ArraySplits:
    """uint8 images `[N, H, W, C]` and int32 labels `[N]` per split.

    `num_classes` and `class_names` are what the source declares about its
    classes (None: nothing); `classes.py` reconciles and checks them.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_val: Optional[np.ndarray] = None
    y_val: Optional[np.ndarray] = None
    class_names: Optional[tuple] = None
    num_classes: Optional[int] = None


def check_images(images, split: str) -> np.ndarray:
    """Returns `images` as uint8 `[N, H, W, C]`; `[N, H, W]` gains `C = 1`.

    Raises:
        ValueError: wrong rank, channel count, dtype or value range, or no examples.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.ndim != 4:
        raise ValueError(
            f"{split} images must have shape [N, H, W] or [N, H, W, C], got "
            f"shape {images.shape} (rank {images.ndim})")
    if images.shape[0] == 0:
        raise ValueError(f"{split} split is empty (0 images)")
    if images.shape[-1] not in (1, 3):
        raise ValueError(
            f"{split} images must have 1 or 3 channels, got shape {images.shape}")
    if images.dtype != np.uint8:
        if not np.issubdtype(images.dtype, np.integer):
            raise ValueError(
                f"{split} images must be uint8 pixels 0-255, got dtype {images.dtype}; "
                "convert float images in [0, 1] with (x * 255).round().astype('uint8')")
        if images.min() < 0 or images.max() > 255:
            raise ValueError(
                f"{split} images must be pixels 0-255, got values in "
                f"[{images.min()}, {images.max()}]")
        images = images.astype(np.uint8)
    return images


def check_labels(labels, num_images: int, split: str,
                 num_classes: Optional[int] = None) -> np.ndarray:
    """Returns `labels` as int32 `[N]`.

    Raises:
        ValueError: not integer class ids, count differs from the images, or a
            label outside `[0, num_classes)`.
    """
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{split} labels must be integer class ids of shape [N], got dtype "
            f"{labels.dtype} shape {labels.shape}")
    if labels.shape[0] != num_images:
        raise ValueError(
            f"{split} has {num_images} images but {labels.shape[0]} labels")
    if labels.size and labels.min() < 0:
        raise ValueError(f"{split} labels must be >= 0, got {labels.min()}")
    if num_classes is not None and labels.size and labels.max() >= num_classes:
        raise ValueError(
            f"{split} label {labels.max()} is out of range for {num_classes} "
            f"classes (valid: 0 .. {num_classes - 1})")
    return labels.astype(np.int32)


def checked(splits: ArraySplits) -> ArraySplits:
    """Validates the images and labels of every split (shapes, dtypes, counts).

    The labels' range is checked against the declared classes later
    (`classes.check_labels`).
    """
    named = [("train", splits.x_train, splits.y_train),
             ("test", splits.x_test, splits.y_test)]
    if splits.x_val is not None or splits.y_val is not None:
        if splits.x_val is None or splits.y_val is None:
            raise ValueError("validation needs both images and labels (x_val and y_val)")
        named.append(("validation", splits.x_val, splits.y_val))
    images = {name: check_images(x, name) for name, x, _ in named}
    labels = {name: check_labels(y, len(images[name]), name) for name, _, y in named}
    shapes = {name: x.shape[1:] for name, x in images.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"image shapes differ between splits: {shapes}")
    return dataclasses.replace(
        splits, x_train=images["train"], y_train=labels["train"], x_test=images["test"],
        y_test=labels["test"], x_val=images.get("validation"), y_val=labels.get("validation"))


def carve_validation(x: np.ndarray, y: np.ndarray, fraction: float):
    """Splits `(x, y)` into disjoint train and validation parts.

    The validation part is `round(fraction * N)` examples chosen by a fixed
    permutation (deterministic, independent of the training seed).

    Returns:
        `(x_train, y_train, x_val, y_val)`; the validation arrays are empty
        when `fraction == 0`.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {fraction!r}")
    num_val = int(round(fraction * len(x)))
    order = np.random.default_rng(_VALIDATION_CARVE_SEED).permutation(len(x))
    # Sorted indices keep each part in the source's order.
    val_idx, train_idx = np.sort(order[:num_val]), np.sort(order[num_val:])
    if len(train_idx) == 0:
        raise ValueError(
            f"validation_fraction={fraction} leaves no training examples out of {len(x)}")
    return x[train_idx], y[train_idx], x[val_idx], y[val_idx]


def mean_std(images: np.ndarray) -> tuple:
    """Per-channel mean and std on the 0–1 scale of uint8 `[N, H, W, C]`."""
    channels = images.shape[-1]
    flat = images.reshape(-1, channels)
    # Chunked float64 sums: exact enough and never a float copy of everything.
    total = np.zeros(channels)
    total_sq = np.zeros(channels)
    for start in range(0, len(flat), 1 << 22):
        chunk = flat[start:start + (1 << 22)].astype(np.float64) / 255.0
        total += chunk.sum(0)
        total_sq += np.square(chunk).sum(0)
    mean = total / len(flat)
    std = np.sqrt(np.maximum(total_sq / len(flat) - np.square(mean), 0.0))
    if np.any(std < 1e-6):
        raise ValueError(
            f"training images are constant in some channel (std {std.tolist()}); "
            "cannot normalise")
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def load_npz(path: str) -> ArraySplits:
    """Reads `x_train, y_train, x_test, y_test` (+ optional `x_val, y_val`).

    The file may declare its classes with a scalar `num_classes` and/or a
    string array `class_names` (label `i` is `class_names[i]`).

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: a required array is missing, or a malformed class declaration.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"npz file {path!r} not found; save one with numpy.savez(path, "
            "x_train=..., y_train=..., x_test=..., y_test=...)")
    with np.load(path, allow_pickle=False) as arrays:
        required = ("x_train", "y_train", "x_test", "y_test")
        missing = [key for key in required if key not in arrays.files]
        if missing:
            raise ValueError(
                f"npz file {path!r} lacks arrays {missing}; it has {arrays.files}, "
                f"needs {list(required)} (optional x_val, y_val)")
        num_classes = class_names = None
        if "num_classes" in arrays.files:
            value = arrays["num_classes"]
            if value.ndim != 0 or not np.issubdtype(value.dtype, np.integer):
                raise ValueError(f"npz file {path!r}: num_classes must be a scalar integer, "
                                 f"got {value.dtype} shape {value.shape}")
            num_classes = int(value)
        if "class_names" in arrays.files:
            value = arrays["class_names"]
            if value.ndim != 1 or value.dtype.kind not in "US":
                raise ValueError(f"npz file {path!r}: class_names must be a 1-D string array, "
                                 f"got {value.dtype} shape {value.shape}")
            class_names = tuple(str(name) for name in value.astype(str))
        return ArraySplits(
            arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
            arrays["x_val"] if "x_val" in arrays.files else None,
            arrays["y_val"] if "y_val" in arrays.files else None,
            class_names=class_names, num_classes=num_classes)
