"""Normalisation and the training augmentations of METHOD.md §4, in TensorFlow.

The tf.data path's `Preprocessor`; the policy below lives in augmentation.py
(re-exported here), the TF-free twin in numpy_augment.py.

* Grey images (e.g. 28×28 MNIST/Fashion-MNIST): random crop with 2-pixel zero
  padding, no flip by default.
* Colour images below 128 px (CIFAR 32×32, ImageNet 64×64): random crop with
  `size // 8` pixels of zero padding (4 at 32 px, 8 at 64 px) + horizontal flip
  (He et al. 2016 CIFAR recipe).
* Colour images of 128 px and more (ImageNet 224): random-resized-crop (area
  8–100 %, aspect 3/4–4/3, Szegedy et al. 2015) + flip; evaluation takes the
  centre `size` crop. Such images are stored at `round(size / 0.875)` px
  (shorter side resized, centre-cropped), so the evaluation view is the usual
  "resize 256, centre-crop 224" and random-resized-crop samples from that
  square **[ours: storage size]**.

Randomness is stateless (`tf.image.stateless_*`): every call takes an explicit
`[2]` seed, so results do not depend on parallelism or call order. The
pipelines draw one seed per example from `tf.data.Dataset.random(seed,
rerandomize_each_iteration=True)`: the same `seed` gives the same epoch-1
batches, and each new epoch (new iterator) gets new crops and flips.
"""

from __future__ import annotations

import tensorflow as tf

from epsd_tf.data.augmentation import (  # noqa: F401  (re-exported: augment.Augmentation, ...)
    AUGMENTATION_KINDS,
    EVAL_CROP_FRACTION,
    LARGE_IMAGE_SIZE,
    Augmentation,
    default_augmentation,
    stored_size,
)


def resize_and_center_crop(images, size: int):
    """Resizes the shorter side to `size`, centre-crops `size × size`; uint8.

    Works on `[H, W, C]` or `[N, H, W, C]` uint8; returns the input unchanged
    when it already is `size × size`.
    """
    images = tf.convert_to_tensor(images)
    static = images.shape[-3:-1]
    if static[0] == size and static[1] == size:
        return images
    shape = tf.shape(images)
    height = tf.cast(shape[-3], tf.float32)
    width = tf.cast(shape[-2], tf.float32)
    scale = float(size) / tf.minimum(height, width)
    new_h = tf.maximum(size, tf.cast(tf.round(height * scale), tf.int32))
    new_w = tf.maximum(size, tf.cast(tf.round(width * scale), tf.int32))
    resized = tf.image.resize(images, tf.stack([new_h, new_w]), antialias=True)
    top = (new_h - size) // 2
    left = (new_w - size) // 2
    cropped = resized[..., top:top + size, left:left + size, :]
    channels = images.shape[-1]
    cropped = tf.ensure_shape(cropped, [*cropped.shape[:-3], size, size, channels])
    return tf.cast(tf.clip_by_value(tf.round(cropped), 0.0, 255.0), tf.uint8)


class Preprocessor:
    """`preprocess(image_uint8, training, seed=None) -> float32` (DESIGN.md).

    Normalises `(x / 255 - mean) / std` per channel and, when `training`,
    applies the augmentation first. Accepts one image `[h, w, C]` or a batch
    `[N, h, w, C]` of stored uint8 images; returns `image_shape`-sized float32.

    Args:
        image_shape: model input `(H, W, C)`.
        mean, std: per-channel statistics on the 0–1 scale.
        augmentation: the `Augmentation` used when `training`.
        seed: seeds the generator used when a training call passes no `seed`.
    """

    def __init__(self, image_shape: tuple, mean: tuple, std: tuple,
                 augmentation: Augmentation, seed: int = 0):
        self.image_shape = tuple(int(d) for d in image_shape)
        self.augmentation = augmentation
        self._mean = tf.constant(mean, tf.float32) * 255.0
        self._inv_std = 1.0 / (tf.constant(std, tf.float32) * 255.0)
        self._generator = tf.random.Generator.from_seed(seed)

    def __call__(self, image, training: bool, seed=None):
        image = tf.convert_to_tensor(image)
        if not training or self.augmentation.kind == "none":
            return self.normalise(self.eval_view(image))
        if image.shape.rank == 4:
            count = tf.shape(image)[0]
            if seed is None:
                seeds = tf.transpose(self._generator.make_seeds(count))
            else:
                seeds = tf.random.experimental.stateless_split(seed, count)
            views = tf.map_fn(lambda args: self.augment(*args), (image, seeds),
                              fn_output_signature=tf.float32)
            return self.normalise(views)
        if seed is None:
            seed = self._generator.make_seeds(1)[:, 0]
        return self.normalise(self.augment(image, seed))

    def normalise(self, image):
        """uint8/float pixels 0–255 -> float32 `(x / 255 - mean) / std`."""
        return (tf.cast(image, tf.float32) - self._mean) * self._inv_std

    def eval_view(self, image):
        """The un-augmented view: the centre crop for random-resized-crop data."""
        if self.augmentation.kind != "resized_crop":
            return image
        height, width = self.image_shape[:2]
        stored_h, stored_w = image.shape[-3], image.shape[-2]
        top, left = (stored_h - height) // 2, (stored_w - width) // 2
        return image[..., top:top + height, left:left + width, :]

    def augment(self, image, seed):
        """One augmented view of one stored uint8 image `[h, w, C]`; float32 0–255."""
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        height, width, channels = self.image_shape
        if self.augmentation.kind == "pad_crop":
            pad = self.augmentation.padding
            padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
            view = tf.image.stateless_random_crop(padded, [height, width, channels],
                                                  crop_seed)
        else:  # "resized_crop"
            begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
                tf.shape(image), bounding_boxes=tf.zeros([1, 0, 4]), seed=crop_seed,
                min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3),
                area_range=(0.08, 1.0), max_attempts=10,
                use_image_if_no_bounding_boxes=True)
            view = tf.image.resize(tf.slice(image, begin, size), [height, width])
            view = tf.ensure_shape(view, [height, width, channels])
        view = tf.cast(view, tf.float32)
        if self.augmentation.flip:
            view = tf.image.stateless_random_flip_left_right(view, flip_seed)
        return view
