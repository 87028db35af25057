"""Shared building blocks and input checks for the model zoo.

Conventions every builder in `epsd_tf.models` follows (state them once, here):

* Convolutions use `kernel_initializer="he_normal"` (He et al., "Delving Deep
  into Rectifiers", ICCV 2015: zero-mean (truncated) normal with variance
  `2 / fan_in`), the initialiser of the ResNet/VGG/MobileNet papers' codebases.
  Pruning-at-init scores depend on the initial weights, so this is fixed.
* A convolution followed by BatchNorm has no bias (`use_bias=False`): the BN
  shift makes it redundant, and it keeps the prunable weights the kernels only.
* BatchNorm uses `momentum=0.9, epsilon=1e-5`, the PyTorch defaults
  (`momentum=0.1` in PyTorch's convention) that the SD papers' recipes assume.
* No weight decay / regularizers in the model: the optimizer applies it.
* The classifier is global average pooling + one `Dense` named `"logits"` that
  returns logits (no softmax) in float32 (`dtype="float32"`), so the model works
  under a `mixed_float16` policy and losses see float32.
* `padding="same"` everywhere, so a stride-2 layer maps `H -> ceil(H / 2)`.
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import layers

CONV_INITIALIZER = "he_normal"
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def min_input_size(num_downsamplings: int) -> int:
    """Smallest height/width for a network with `num_downsamplings` stride-2 ops.

    Every stride-2 operation must see at least 2 pixels; with `same` padding a
    stride-2 op maps `H -> ceil(H / 2)`, so the last one sees `ceil(H / 2^(k-1))`
    pixels, which is >= 2 exactly when `H >= 2^(k-1) + 1`.
    """
    if num_downsamplings <= 0:
        return 1
    return 2 ** (num_downsamplings - 1) + 1


def check_arguments(
    model_name: str,
    input_shape: Sequence[int],
    num_classes: int,
    *,
    num_downsamplings: int,
) -> tuple[int, int, int]:
    """Validates `(H, W, C)` and `num_classes` before any layer is built.

    Args:
        model_name: used in error messages.
        input_shape: `(height, width, channels)` of one example, positive ints.
        num_classes: number of output logits, >= 2.
        num_downsamplings: stride-2 operations in the network (see
            `min_input_size`).

    Returns:
        `input_shape` as a tuple of three ints.

    Raises:
        ValueError: wrong rank, non-positive or non-integer sizes, an image too
            small for the downsampling, or `num_classes < 2`.
    """
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise ValueError(
            f"{model_name}: input_shape must be (height, width, channels), got {input_shape!r}"
        ) from None
    if len(shape) != 3:
        raise ValueError(
            f"{model_name}: input_shape must have rank 3 (height, width, channels), "
            f"got {input_shape!r} (rank {len(shape)})"
        )
    if not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ValueError(
            f"{model_name}: input_shape entries must be positive ints, got {input_shape!r}"
        )
    min_size = min_input_size(num_downsamplings)
    if shape[0] < min_size or shape[1] < min_size:
        raise ValueError(
            f"{model_name}: input_shape {shape} is too small: the network downsamples "
            f"{num_downsamplings} times by 2, so height and width must be >= {min_size}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"{model_name}: num_classes must be an int >= 2, got {num_classes!r}")
    return shape  # type: ignore[return-value]


def check_stem(model_name: str, stem: str) -> str:
    """Validates a `stem` option (`"cifar"` or `"imagenet"`)."""
    if stem not in ("cifar", "imagenet"):
        raise ValueError(f"{model_name}: stem must be 'cifar' or 'imagenet', got {stem!r}")
    return stem


def conv(filters: int, kernel_size: int, strides: int, name: str) -> layers.Conv2D:
    """Bias-free `same`-padded convolution with He-normal initialisation."""
    return layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer=CONV_INITIALIZER,
        name=name,
    )


def batch_norm(name: str) -> layers.BatchNormalization:
    """BatchNorm with the PyTorch momentum/epsilon (see module docstring)."""
    return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


def conv_bn_relu(x, filters: int, kernel_size: int, strides: int, prefix: str, suffix: str = ""):
    """`conv -> BN -> ReLU`, layers named `{prefix}_conv{suffix}`, `_bn`, `_relu`."""
    x = conv(filters, kernel_size, strides, name=f"{prefix}_conv{suffix}")(x)
    x = batch_norm(name=f"{prefix}_bn{suffix}")(x)
    return layers.ReLU(name=f"{prefix}_relu{suffix}")(x)


def classifier(x, num_classes: int):
    """Global average pool `[B, H, W, C] -> [B, C]`, then float32 logits `[B, classes]`."""
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return layers.Dense(num_classes, dtype="float32", name="logits")(x)


def functional_model(inputs, outputs, name: str) -> keras.Model:
    """Wraps a graph into a Functional model (built on construction)."""
    return keras.Model(inputs=inputs, outputs=outputs, name=name)
