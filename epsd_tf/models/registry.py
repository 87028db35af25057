"""Name -> builder registry and `build()`, the single entry point of the zoo."""

from __future__ import annotations

import inspect
from typing import Callable, Sequence

import keras

from epsd_tf.models.mobilenet import mobilenet_v2
from epsd_tf.models.resnet import resnet18, resnet20, resnet32, resnet50, resnet56
from epsd_tf.models.small_cnn import small_cnn
from epsd_tf.models.vgg import vgg16_bn, vgg19_bn

# Every builder has the signature `(input_shape, num_classes, *, **options)`.
MODELS: dict[str, Callable[..., keras.Model]] = {
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet56": resnet56,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "vgg16_bn": vgg16_bn,
    "vgg19_bn": vgg19_bn,
    "mobilenet_v2": mobilenet_v2,
    "small_cnn": small_cnn,
}


def _options(builder: Callable[..., keras.Model]) -> list[str]:
    """Keyword-only options a builder accepts."""
    parameters = inspect.signature(builder).parameters.values()
    return [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]


def build(name: str, input_shape: Sequence[int], num_classes: int, **kwargs) -> keras.Model:
    """Builds a zoo model as a built Functional `keras.Model` returning float32 logits.

    Args:
        name: a key of `MODELS`.
        input_shape: `(height, width, channels)` of one example.
        num_classes: number of logits (>= 2).
        **kwargs: builder options (e.g. `stem="imagenet"` for `resnet18`,
            `width_multiplier=0.5` for `mobilenet_v2`).

    Raises:
        ValueError: unknown `name`, an option the builder does not take, or a bad
            `input_shape` / `num_classes` / option value.
    """
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}; valid names: {', '.join(sorted(MODELS))}")
    builder = MODELS[name]
    valid = _options(builder)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(
            f"Model {name!r} does not take option(s) {unknown}; "
            f"valid options: {valid if valid else 'none'}"
        )
    return builder(input_shape, num_classes, **kwargs)
