"""Normalisation and the METHOD.md §4 augmentations in numpy, a batch at a time.

The TF-free twin of augment.py's `Preprocessor` (same policy, augmentation.py;
same signature `preprocess(images_uint8, training, seed=None) -> float32`),
used by the numpy input path (array_batches.py) on backends other than
TensorFlow. It works on whole batches:

* pad + random crop + flip: the batch is zero-padded and every example's
  window taken in one gather from a sliding-window view (no Python loop, so
  worker threads run in parallel), flipped where drawn, then normalised in one
  pass over rows of `W * C` values (a per-channel broadcast over a length-`C`
  inner axis is several times slower in numpy);
* random-resized-crop (inputs >= 128 px; Szegedy et al. 2015: area 8–100 %,
  aspect 3/4–4/3, 10 attempts, else the whole image) resizes each crop with
  PIL's bilinear filter.

Randomness comes from a `numpy.random.Generator` the caller seeds (the
batches seed one per `(seed, epoch, batch)`), so a batch does not depend on
which worker thread builds it. The draws differ from tf.data's stateless ones:
the two paths give the same distribution of views, not the same pixels.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from epsd_tf.data.augmentation import Augmentation

_RESIZED_CROP_ATTEMPTS = 10
_RESIZED_CROP_AREA = (0.08, 1.0)
_RESIZED_CROP_LOG_RATIO = (np.log(3 / 4), np.log(4 / 3))


def generator(seed) -> np.random.Generator:
    """A numpy Generator from an int, a sequence of ints, or a Generator."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(np.asarray(seed, np.int64).ravel().tolist()
                                 if np.ndim(seed) else int(seed))


def resize_and_center_crop(images: np.ndarray, size: int) -> np.ndarray:
    """Resizes the shorter side to `size` (PIL bilinear, antialiased), centre-crops.

    The numpy twin of `augment.resize_and_center_crop`; `[H, W, C]` or
    `[N, H, W, C]` uint8 in, uint8 out; unchanged when already `size × size`.
    """
    images = np.asarray(images, np.uint8)
    if images.ndim == 3:
        return resize_and_center_crop(images[None], size)[0]
    height, width = images.shape[1:3]
    if height == size and width == size:
        return images
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    top, left = (new_h - size) // 2, (new_w - size) // 2
    out = np.empty((len(images), size, size, images.shape[-1]), np.uint8)
    for i, image in enumerate(images):
        resized = _pil_resize(image, new_h, new_w)
        out[i] = resized[top:top + size, left:left + size]
    return out


def _pil_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    grey = image.shape[-1] == 1
    pil = Image.fromarray(image[..., 0] if grey else image)
    resized = np.asarray(pil.resize((width, height), Image.BILINEAR))
    return resized[..., None] if grey else resized


class NumpyPreprocessor:
    """`preprocess(images_uint8, training, seed=None) -> float32` without TensorFlow.

    Normalises `(x / 255 - mean) / std` per channel and, when `training`,
    applies the augmentation first (METHOD.md §4). Accepts one stored image
    `[h, w, C]` or a batch `[N, h, w, C]` of uint8; returns float32 of the
    model input size.

    Args:
        image_shape: model input `(H, W, C)`.
        mean, std: per-channel statistics on the 0–1 scale.
        augmentation: the `Augmentation` applied when `training`.
        seed: seeds the generator used when a training call passes no `seed`.
    """

    def __init__(self, image_shape: tuple, mean: tuple, std: tuple,
                 augmentation: Augmentation, seed: int = 0):
        self.image_shape = tuple(int(d) for d in image_shape)
        self.augmentation = augmentation
        height, width, channels = self.image_shape
        # Row-wise statistics: one row of an image is W * C interleaved values.
        self._mean_row = np.tile(np.asarray(mean, np.float32) * 255.0, width)
        self._inv_std_row = np.tile(1.0 / (np.asarray(std, np.float32) * 255.0), width)
        self._generator = np.random.default_rng(seed)

    def __call__(self, images, training: bool, seed=None) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim == 3:
            return self(images[None], training, seed)[0]
        if not training or self.augmentation.kind == "none":
            return self.normalise(self.eval_view(images))
        rng = self._generator if seed is None else generator(seed)
        return self.normalise(self.augment(images, rng))

    def normalise(self, images: np.ndarray) -> np.ndarray:
        """Pixels 0–255 `[N, H, W, C]` -> float32 `(x / 255 - mean) / std`."""
        count, height, width, channels = images.shape
        rows = images.reshape(count, height, width * channels).astype(np.float32)
        rows -= self._mean_row
        rows *= self._inv_std_row
        return rows.reshape(count, height, width, channels)

    def eval_view(self, images: np.ndarray) -> np.ndarray:
        """The un-augmented view: the centre crop for random-resized-crop data."""
        if self.augmentation.kind != "resized_crop":
            return images
        height, width = self.image_shape[:2]
        top = (images.shape[1] - height) // 2
        left = (images.shape[2] - width) // 2
        return images[:, top:top + height, left:left + width]

    def augment(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augmented uint8 views `[N, H, W, C]` of stored images `[N, h, w, C]`."""
        if self.augmentation.kind == "pad_crop":
            return self._pad_crop(images, rng)
        return self._resized_crop(images, rng)

    def _pad_crop(self, images, rng):
        count = len(images)
        height, width, _ = self.image_shape
        pad = self.augmentation.padding
        padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        tops = rng.integers(0, padded.shape[1] - height + 1, count)
        lefts = rng.integers(0, padded.shape[2] - width + 1, count)
        flips = self._flips(rng, count)
        # Every window of every image as a view, then one gather: [N, C, H, W].
        windows = sliding_window_view(padded, (height, width), axis=(1, 2))
        views = windows[np.arange(count), tops, lefts]
        views[flips] = views[flips][..., ::-1]
        return np.ascontiguousarray(views.transpose(0, 2, 3, 1))

    def _resized_crop(self, images, rng):
        count = len(images)
        height, width, channels = self.image_shape
        flips = self._flips(rng, count)
        out = np.empty((count, height, width, channels), np.uint8)
        for i, image in enumerate(images):
            top, left, crop_h, crop_w = _resized_crop_box(image.shape[0], image.shape[1], rng)
            view = _pil_resize(np.ascontiguousarray(
                image[top:top + crop_h, left:left + crop_w]), height, width)
            out[i] = view[:, ::-1] if flips[i] else view
        return out

    def _flips(self, rng, count):
        if not self.augmentation.flip:
            return np.zeros(count, bool)
        return rng.random(count) < 0.5


def _resized_crop_box(height: int, width: int, rng: np.random.Generator) -> tuple:
    """`(top, left, h, w)` of a random-resized crop, or the whole image."""
    area = height * width
    for _ in range(_RESIZED_CROP_ATTEMPTS):
        target = area * rng.uniform(*_RESIZED_CROP_AREA)
        ratio = np.exp(rng.uniform(*_RESIZED_CROP_LOG_RATIO))
        crop_w = int(round(np.sqrt(target * ratio)))
        crop_h = int(round(np.sqrt(target / ratio)))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(rng.integers(0, height - crop_h + 1))
            left = int(rng.integers(0, width - crop_w + 1))
            return top, left, crop_h, crop_w
    return 0, 0, height, width
