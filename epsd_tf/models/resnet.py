"""ResNets: CIFAR ResNet-20/32/56, ResNet-18 and ResNet-50.

He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.

* `resnet20/32/56` — the CIFAR networks of the paper's §4.2: a 3x3 16-channel
  stem, three stages of `n = (depth - 2) / 6` basic blocks with 16, 32, 64
  channels (stride 2 at the start of stages 2 and 3), global average pooling
  and one Dense layer. Shortcut choice: **option B** — a 1x1 stride-2 conv + BN
  projection where the shape changes, identity elsewhere (the paper's CIFAR
  experiments used option A, zero-padding; B adds 2 x (1x1 conv + BN) and
  keeps every weight a prunable kernel, as most pruning-at-init codebases do).
  Trainable parameters at 10 classes on 32x32x3: 272,474 / 466,906 / 855,770
  (paper, option A: 0.27 M / 0.46 M / 0.85 M).
* `resnet18` — BasicBlock `[2, 2, 2, 2]`, 64-128-256-512 channels, 1x1 conv + BN
  projection shortcuts. `stem="cifar"` (default): 3x3 stride-1 conv, no max pool
  (the standard CIFAR adaptation, e.g. the PS-KD/CS-KD/DLB code);
  `stem="imagenet"`: 7x7 stride-2 conv + 3x3 stride-2 max pool (224x224 or
  64x64 Tiny-ImageNet inputs). 11,173,962 trainable at 10 classes (CIFAR stem).
* `resnet50` — ImageNet bottleneck ResNet `[3, 4, 6, 3]` with the stride on the
  3x3 conv ("v1.5", as torchvision); 25,557,032 trainable at 1000 classes
  (paper: 25.6 M).

Layers are named `stem_conv`, `stage{s}_block{b}_conv{k}`, `..._bn{k}`,
`..._shortcut_conv`, `..._add`, `..._out`, `pool`, `logits` (stages from 1,
blocks from 0) so per-layer pruning reports are readable.
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import layers

from epsd_tf.models import blocks


def _basic_block(x, filters: int, strides: int, name: str):
    """Two 3x3 convs + shortcut: `[B, H, W, C_in] -> [B, H/s, W/s, filters]`."""
    shortcut = x
    y = blocks.conv_bn_relu(x, filters, 3, strides, name, suffix="1")
    y = blocks.conv(filters, 3, 1, name=f"{name}_conv2")(y)
    y = blocks.batch_norm(name=f"{name}_bn2")(y)
    if strides != 1 or x.shape[-1] != filters:
        shortcut = blocks.conv(filters, 1, strides, name=f"{name}_shortcut_conv")(x)
        shortcut = blocks.batch_norm(name=f"{name}_shortcut_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def _bottleneck_block(x, filters: int, strides: int, name: str):
    """1x1 reduce, 3x3 (strided), 1x1 expand x4: `-> [B, H/s, W/s, 4 * filters]`."""
    shortcut = x
    y = blocks.conv_bn_relu(x, filters, 1, 1, name, suffix="1")
    y = blocks.conv_bn_relu(y, filters, 3, strides, name, suffix="2")
    y = blocks.conv(4 * filters, 1, 1, name=f"{name}_conv3")(y)
    y = blocks.batch_norm(name=f"{name}_bn3")(y)
    if strides != 1 or x.shape[-1] != 4 * filters:
        shortcut = blocks.conv(4 * filters, 1, strides, name=f"{name}_shortcut_conv")(x)
        shortcut = blocks.batch_norm(name=f"{name}_shortcut_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def _stages(x, block, widths: Sequence[int], depths: Sequence[int], first_stride: int):
    """Stacks stages; stage 1 uses `first_stride`, later stages start with stride 2."""
    for stage, (filters, depth) in enumerate(zip(widths, depths), start=1):
        for index in range(depth):
            strides = (first_stride if stage == 1 else 2) if index == 0 else 1
            x = block(x, filters, strides, name=f"stage{stage}_block{index}")
    return x


def _cifar_resnet(depth: int, input_shape: Sequence[int], num_classes: int) -> keras.Model:
    name = f"resnet{depth}"
    shape = blocks.check_arguments(name, input_shape, num_classes, num_downsamplings=2)
    blocks_per_stage = (depth - 2) // 6
    inputs = keras.Input(shape=shape, name="image")
    x = blocks.conv_bn_relu(inputs, 16, 3, 1, "stem")
    x = _stages(x, _basic_block, (16, 32, 64), (blocks_per_stage,) * 3, first_stride=1)
    return blocks.functional_model(inputs, blocks.classifier(x, num_classes), name)


def resnet20(input_shape: Sequence[int], num_classes: int) -> keras.Model:
    """CIFAR ResNet-20 (3 x 3 basic blocks), He et al. 2016 §4.2."""
    return _cifar_resnet(20, input_shape, num_classes)


def resnet32(input_shape: Sequence[int], num_classes: int) -> keras.Model:
    """CIFAR ResNet-32 (3 x 5 basic blocks), He et al. 2016 §4.2."""
    return _cifar_resnet(32, input_shape, num_classes)


def resnet56(input_shape: Sequence[int], num_classes: int) -> keras.Model:
    """CIFAR ResNet-56 (3 x 9 basic blocks), He et al. 2016 §4.2."""
    return _cifar_resnet(56, input_shape, num_classes)


def _stem(inputs, stem: str):
    """CIFAR: 3x3/1 conv. ImageNet: 7x7/2 conv + 3x3/2 max pool (2 downsamplings)."""
    if stem == "cifar":
        return blocks.conv_bn_relu(inputs, 64, 3, 1, "stem")
    x = blocks.conv_bn_relu(inputs, 64, 7, 2, "stem")
    return layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)


def resnet18(input_shape: Sequence[int], num_classes: int, *, stem: str = "cifar") -> keras.Model:
    """ResNet-18 (basic blocks `[2, 2, 2, 2]`, 64-512 channels).

    Args:
        input_shape: `(H, W, C)`.
        num_classes: number of logits.
        stem: `"cifar"` (3x3 stride-1 conv, no pooling; for 28-32 px images) or
            `"imagenet"` (7x7 stride-2 conv + max pool; for 64 or 224 px images).
    """
    blocks.check_stem("resnet18", stem)
    downsamplings = 3 if stem == "cifar" else 5
    shape = blocks.check_arguments("resnet18", input_shape, num_classes,
                                   num_downsamplings=downsamplings)
    inputs = keras.Input(shape=shape, name="image")
    x = _stem(inputs, stem)
    x = _stages(x, _basic_block, (64, 128, 256, 512), (2, 2, 2, 2), first_stride=1)
    return blocks.functional_model(inputs, blocks.classifier(x, num_classes), "resnet18")


def resnet50(input_shape: Sequence[int], num_classes: int) -> keras.Model:
    """ImageNet ResNet-50 (bottleneck blocks `[3, 4, 6, 3]`, ImageNet stem)."""
    shape = blocks.check_arguments("resnet50", input_shape, num_classes, num_downsamplings=5)
    inputs = keras.Input(shape=shape, name="image")
    x = _stem(inputs, "imagenet")
    x = _stages(x, _bottleneck_block, (64, 128, 256, 512), (3, 4, 6, 3), first_stride=1)
    return blocks.functional_model(inputs, blocks.classifier(x, num_classes), "resnet50")
