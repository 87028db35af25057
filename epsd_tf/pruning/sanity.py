"""Sanity transforms for pruning ablations.

Frankle et al., "Pruning Neural Networks at Initialization: Why Are We Missing
the Mark?", ICLR 2021 (METHOD.md §3). Each transform changes exactly one
thing:

* `shuffle`: permutes each layer's mask (same count per layer, new positions);
* `invert`: keeps the lowest-ranked weights instead of the highest (same count);
* `reinit`: keeps the mask and re-draws the kept weights from their initializer.
"""

from __future__ import annotations

from typing import Mapping

import keras
import numpy as np

from epsd_tf.pruning import model_masks

SANITY_TRANSFORMS = ("shuffle", "invert", "reinit")


def check_sanity(sanity: str | None) -> str | None:
    if sanity is not None and sanity not in SANITY_TRANSFORMS:
        raise ValueError(f"Unknown sanity transform {sanity!r}; valid: "
                         f"{list(SANITY_TRANSFORMS)} or None")
    return sanity


def shuffle(masks: Mapping[str, np.ndarray], seed: int = 0) -> dict[str, np.ndarray]:
    """Randomly permutes the entries of each layer's mask (seeded)."""
    rng = np.random.default_rng(seed)
    return {name: rng.permutation(np.asarray(mask).ravel()).reshape(np.shape(mask))
            for name, mask in masks.items()}


def invert(scores: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Negated scores: top-k of these keeps the lowest original scores."""
    return {name: -np.asarray(value) for name, value in scores.items()}


def _initializer(layer, variable):
    candidates = [f"{variable.name}_initializer",
                  variable.name.replace("kernel", "initializer"), "depthwise_initializer"]
    for attribute in candidates:
        initializer = getattr(layer, attribute, None)
        if initializer is not None:
            return keras.initializers.get(initializer)
    raise ValueError(f"reinit cannot find the initializer of {variable.path!r}; give layer "
                     f"{layer.name!r} an attribute {candidates[0]!r}.")


def reinit(model: keras.Model, seed: int = 0) -> None:
    """Re-draws every prunable kernel of `model` in place, masks applied.

    Each kernel is drawn again from its layer's initializer with seed
    `seed + index`; kernels that have a mask (wrapped models) are multiplied
    by it so pruned weights stay exactly 0.
    """
    for index, weight in enumerate(model_masks.prunable_weights(model)):
        initializer = _initializer(weight.layer, weight.variable)
        config = initializer.get_config()
        if "seed" in config:
            initializer = initializer.__class__.from_config({**config, "seed": seed + index})
        value = np.asarray(initializer(weight.variable.shape, dtype=weight.variable.dtype))
        if weight.mask is not None:
            value = value * weight.mask.numpy()
        weight.variable.assign(value)
