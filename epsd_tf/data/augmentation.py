"""The training augmentation of METHOD.md §4 as data: which kind, padding, flip.

No TensorFlow here: both input paths read it, the tf.data path (augment.py,
`tf.image.stateless_*`) and the TF-free numpy path (numpy_augment.py).

* Grey images (e.g. 28×28 MNIST/Fashion-MNIST): random crop with 2-pixel zero
  padding, no flip by default.
* Colour images below 128 px (CIFAR 32×32, ImageNet 64×64): random crop with
  `size // 8` pixels of zero padding (4 at 32 px, 8 at 64 px) + horizontal flip
  (He et al. 2016 CIFAR recipe).
* Colour images of 128 px and more (ImageNet 224): random-resized-crop (area
  8–100 %, aspect 3/4–4/3, Szegedy et al. 2015) + flip; evaluation takes the
  centre `size` crop of images stored at `round(size / 0.875)` px.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

# Model inputs at least this large use random-resized-crop instead of pad+crop.
LARGE_IMAGE_SIZE = 128
# Evaluation centre crop = this fraction of the stored size (224 of 256).
EVAL_CROP_FRACTION = 0.875
AUGMENTATION_KINDS = ("none", "pad_crop", "resized_crop")


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Which augmentation `Preprocessor` applies in training.

    Attributes:
        kind: "none", "pad_crop" or "resized_crop".
        padding: zero padding (pixels per side) before the random crop ("pad_crop").
        flip: random horizontal flip.
    """

    kind: str = "none"
    padding: int = 0
    flip: bool = False

    def __post_init__(self):
        if self.kind not in AUGMENTATION_KINDS:
            raise ValueError(
                f"augmentation kind {self.kind!r} unknown; valid: {AUGMENTATION_KINDS}")
        if self.padding < 0:
            raise ValueError(f"crop padding must be >= 0, got {self.padding}")


def default_augmentation(image_shape: tuple, augment: bool = True,
                         crop_padding: Optional[int] = None,
                         horizontal_flip: Optional[bool] = None) -> Augmentation:
    """The METHOD.md §4 augmentation for a model input shape `(H, W, C)`.

    `crop_padding` / `horizontal_flip` override the defaults when given.
    """
    if not augment:
        return Augmentation("none")
    height, width, channels = image_shape
    if min(height, width) >= LARGE_IMAGE_SIZE:
        flip = True if horizontal_flip is None else horizontal_flip
        return Augmentation("resized_crop", 0, flip)
    if crop_padding is None:
        # 2 px at 28 px grey (METHOD.md §4); size // 8 for colour (4 at 32 px).
        crop_padding = max(1, round(height / 14)) if channels == 1 else max(1, height // 8)
    flip = (channels == 3) if horizontal_flip is None else horizontal_flip
    return Augmentation("pad_crop", int(crop_padding), bool(flip))


def stored_size(image_size: int) -> int:
    """Stored side length for a model input side `image_size`."""
    if image_size >= LARGE_IMAGE_SIZE:
        return int(round(image_size / EVAL_CROP_FRACTION))
    return int(image_size)
