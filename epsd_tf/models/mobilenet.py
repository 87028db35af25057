"""MobileNetV2 with a width multiplier and a CIFAR stride option.

Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
CVPR 2018. Table 2 of the paper, the torchvision / `keras.applications` layout:

    stem 3x3 conv (32 x width), stride s0
    inverted residual stages (expansion t, channels c, blocks n, stride s):
        (1, 16, 1, 1) (6, 24, 2, s1) (6, 32, 3, 2) (6, 64, 4, 2)
        (6, 96, 3, 1) (6, 160, 3, 2) (6, 320, 1, 1)
    1x1 conv to 1280 (x width if width > 1), global average pool, Dense

Each block: 1x1 expand conv-BN-ReLU6 (skipped when t = 1), 3x3 depthwise
conv-BN-ReLU6 (stride s on the first block of a stage), 1x1 linear projection
conv-BN; identity shortcut when stride 1 and channels match (no projection
shortcuts). Channels are rounded to multiples of 8 (`_make_divisible`, as in the
reference code). No dropout.

`stem="imagenet"`: `s0 = s1 = 2` (total stride 32, for 224x224 inputs).
`stem="cifar"` (default): `s0 = s1 = 1` (total stride 8, the usual CIFAR
adaptation, e.g. kuangliu/pytorch-cifar without its extra projection shortcuts).
Strides do not change the parameter count. Pinned (trainable, width 1.0):
2,236,682 at 10 classes; 3,504,872 at 1000 classes (paper/torchvision: 3.5 M).

Layers are named `stem_conv`, `stage{s}_block{b}_expand_conv`,
`..._depthwise`, `..._project_conv` (+ `_bn`/`_relu`), `head_conv`, `pool`,
`logits`.
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import layers

from epsd_tf.models import blocks

# (expansion t, output channels c, blocks n, stride s); s = None marks the stage
# whose stride depends on the stem option.
_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, None),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Rounds channels to a multiple of `divisor`, never dropping more than 10 %."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _relu6(name: str) -> layers.ReLU:
    return layers.ReLU(max_value=6.0, name=name)


def _inverted_residual(x, expansion: int, filters: int, strides: int, name: str):
    """`[B, H, W, C_in] -> [B, H/s, W/s, filters]` linear-bottleneck block."""
    in_channels = x.shape[-1]
    y = x
    if expansion != 1:
        y = blocks.conv(in_channels * expansion, 1, 1, name=f"{name}_expand_conv")(y)
        y = blocks.batch_norm(name=f"{name}_expand_bn")(y)
        y = _relu6(f"{name}_expand_relu")(y)
    y = layers.DepthwiseConv2D(
        3,
        strides=strides,
        padding="same",
        use_bias=False,
        depthwise_initializer=blocks.CONV_INITIALIZER,
        name=f"{name}_depthwise",
    )(y)
    y = blocks.batch_norm(name=f"{name}_depthwise_bn")(y)
    y = _relu6(f"{name}_depthwise_relu")(y)
    y = blocks.conv(filters, 1, 1, name=f"{name}_project_conv")(y)
    y = blocks.batch_norm(name=f"{name}_project_bn")(y)
    if strides == 1 and in_channels == filters:
        y = layers.Add(name=f"{name}_add")([x, y])
    return y


def mobilenet_v2(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    width_multiplier: float = 1.0,
    stem: str = "cifar",
) -> keras.Model:
    """Builds MobileNetV2.

    Args:
        input_shape: `(H, W, C)`.
        num_classes: number of logits.
        width_multiplier: scales every channel count (> 0; paper's `alpha`).
        stem: `"cifar"` (total stride 8) or `"imagenet"` (total stride 32).
    """
    blocks.check_stem("mobilenet_v2", stem)
    if isinstance(width_multiplier, bool) or not isinstance(width_multiplier, (int, float)) \
            or width_multiplier <= 0:
        raise ValueError(f"mobilenet_v2: width_multiplier must be a number > 0, "
                         f"got {width_multiplier!r}")
    early_stride = 1 if stem == "cifar" else 2
    shape = blocks.check_arguments("mobilenet_v2", input_shape, num_classes,
                                   num_downsamplings=3 if stem == "cifar" else 5)
    inputs = keras.Input(shape=shape, name="image")
    x = blocks.conv(_make_divisible(32 * width_multiplier), 3, early_stride, name="stem_conv")(inputs)
    x = blocks.batch_norm(name="stem_bn")(x)
    x = _relu6("stem_relu")(x)
    for stage, (expansion, channels, depth, stride) in enumerate(_STAGES, start=1):
        filters = _make_divisible(channels * width_multiplier)
        for index in range(depth):
            strides = (early_stride if stride is None else stride) if index == 0 else 1
            x = _inverted_residual(x, expansion, filters, strides, name=f"stage{stage}_block{index}")
    head_channels = _make_divisible(1280 * max(1.0, width_multiplier))
    x = blocks.conv(head_channels, 1, 1, name="head_conv")(x)
    x = blocks.batch_norm(name="head_bn")(x)
    x = _relu6("head_relu")(x)
    return blocks.functional_model(inputs, blocks.classifier(x, num_classes), "mobilenet_v2")
