"""Facts about the datasets the EPSD experiments use (METHOD.md §6).

Each entry fixes the TFDS split names, the number of classes, the model input
shape and the per-channel normalisation statistics. Statistics are on the 0–1
pixel scale, computed over the training set (ImageNet: the usual torchvision
values), so that every source of the same dataset (TFDS, IDX files, .npz)
normalises identically.
"""

from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class KnownDataset:
    """Fixed facts of one dataset.

    Attributes:
        num_classes: number of labels.
        image_shape: `(H, W, C)` of the stored images; `H = W = None` when the
            images vary in size (then `default_image_size` is used).
        mean: per-channel mean, 0–1 scale.
        std: per-channel standard deviation, 0–1 scale.
        train_split: TFDS split used for training (and for the validation carve-out).
        test_split: TFDS split reported as test (ImageNet: "validation").
        validation_split: TFDS split used for validation, or None to carve it
            from `train_split`.
        default_image_size: model input size when the stored size varies.
        class_names: label names, when short enough to list here.
    """

    num_classes: int
    image_shape: tuple
    mean: tuple
    std: tuple
    train_split: str = "train"
    test_split: str = "test"
    validation_split: Optional[str] = None
    default_image_size: Optional[int] = None
    class_names: Optional[tuple] = None


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

_FASHION_MNIST_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog",
                  "frog", "horse", "ship", "truck")


def _imagenet_resized(size: int) -> KnownDataset:
    # TFDS `imagenet_resized/<s>x<s>` (Chrabaszcz et al. 2017) has no test split;
    # its "validation" split (the ILSVRC val set) is the test set.
    return KnownDataset(num_classes=1000, image_shape=(size, size, 3),
                        mean=_IMAGENET_MEAN, std=_IMAGENET_STD,
                        test_split="validation")


KNOWN_DATASETS: dict = {
    "mnist": KnownDataset(10, (28, 28, 1), (0.1307,), (0.3081,)),
    "fashion_mnist": KnownDataset(10, (28, 28, 1), (0.2860,), (0.3530,),
                                  class_names=_FASHION_MNIST_NAMES),
    "cifar10": KnownDataset(10, (32, 32, 3), (0.4914, 0.4822, 0.4465),
                            (0.2470, 0.2435, 0.2616), class_names=_CIFAR10_NAMES),
    "cifar100": KnownDataset(100, (32, 32, 3), (0.5071, 0.4865, 0.4409),
                             (0.2673, 0.2564, 0.2762)),
    # ILSVRC-2012: the labelled "validation" split is the test set; our
    # validation split is carved from train.
    "imagenet2012": KnownDataset(1000, (None, None, 3), _IMAGENET_MEAN, _IMAGENET_STD,
                                 test_split="validation", default_image_size=224),
    "imagenet_resized/8x8": _imagenet_resized(8),
    "imagenet_resized/16x16": _imagenet_resized(16),
    "imagenet_resized/32x32": _imagenet_resized(32),
    "imagenet_resized/64x64": _imagenet_resized(64),
}
