"""VGG-16-BN and VGG-19-BN, CIFAR variant.

Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015, with BatchNorm after every conv (Ioffe & Szegedy 2015)
and the single-Linear classifier of the common CIFAR adaptation (e.g. the
pruning-at-init codebases of SNIP/GraSP/ProsPr):

    [conv3x3-BN-ReLU] x n, maxpool 2x2   (five times; 64, 128, 256, 512, 512 ch.)
    global average pool -> Dense(num_classes)

Pinned choices: bias-free convs (BN follows), max pools with `same` padding (so
28x28 inputs work: 28 -> 14 -> 7 -> 4 -> 2 -> 1), global average pooling before
the classifier (identical to flattening the 1x1x512 map of a 32x32 input, and it
keeps the classifier 512 -> classes for 64x64 inputs). Trainable parameters at 10
classes: 14,724,042 (VGG-16-BN) and 20,035,018 (VGG-19-BN); the usual
"14.7 M / 20.0 M" figures count the 4,224 / 5,504 conv biases we drop.

Layers are named `block{b}_conv{k}`, `block{b}_bn{k}`, `block{b}_relu{k}`,
`block{b}_pool`, `pool`, `logits` (blocks and convs from 1, as in
`keras.applications.VGG16`).
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import layers

from epsd_tf.models import blocks

# Convs per block; the block widths are 64, 128, 256, 512, 512.
_WIDTHS = (64, 128, 256, 512, 512)
_DEPTHS = {"vgg16_bn": (2, 2, 3, 3, 3), "vgg19_bn": (2, 2, 4, 4, 4)}


def _vgg(name: str, input_shape: Sequence[int], num_classes: int) -> keras.Model:
    shape = blocks.check_arguments(name, input_shape, num_classes, num_downsamplings=5)
    inputs = keras.Input(shape=shape, name="image")
    x = inputs
    for block, (filters, depth) in enumerate(zip(_WIDTHS, _DEPTHS[name]), start=1):
        for index in range(1, depth + 1):
            x = blocks.conv_bn_relu(x, filters, 3, 1, f"block{block}", suffix=str(index))
        x = layers.MaxPooling2D(2, strides=2, padding="same", name=f"block{block}_pool")(x)
    return blocks.functional_model(inputs, blocks.classifier(x, num_classes), name)


def vgg16_bn(input_shape: Sequence[int], num_classes: int) -> keras.Model:
    """VGG-16 with BatchNorm, CIFAR variant (13 convs + 1 Dense)."""
    return _vgg("vgg16_bn", input_shape, num_classes)


def vgg19_bn(input_shape: Sequence[int], num_classes: int) -> keras.Model:
    """VGG-19 with BatchNorm, CIFAR variant (16 convs + 1 Dense)."""
    return _vgg("vgg19_bn", input_shape, num_classes)
