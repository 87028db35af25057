"""Mask stripping, sparsity accounting, `.keras` and SavedModel export.

EPSD (Chen et al., AAAI 2024) trains a network whose pruned weights are exactly
zero. What the deployer receives is that network without the mask machinery:
plain Keras layers whose prunable kernels hold the zeros. This module produces
it and writes the two Keras-side artifacts.

Masked-model policy (decided here, tested in tests/export): a model that still
carries `epsd_tf.pruning` mask wrappers is **stripped** (never refused) with
`epsd_tf.pruning.strip_masks`, and the report records `masks_stripped: true`.
Stripping is lossless because the wrapper keeps stored kernels zero where the
mask is zero, so refusing would only add a step for the user.
"""

from typing import Tuple

import keras
import numpy as np
from absl import logging

from epsd_tf import files as floor
from epsd_tf.export import files


def sparsity_stats(model: keras.Model) -> dict:
    """Exact-zero statistics of the prunable kernels and the parameter counts.

    Prunable kernels are those of `epsd_tf.pruning.get_prunable_weights`.

    Returns:
        `{"sparsity", "prunable_weights", "zero_weights", "parameters",
        "nonzero_parameters", "layers": {kernel path: sparsity}}` where
        `sparsity` is the fraction of exact zeros over all prunable kernels.
    """
    # The one definition of "prunable" (METHOD.md §3) lives in epsd_tf.pruning.
    from epsd_tf.pruning import get_prunable_weights

    layers = {}
    total = zeros = 0
    for name, kernel in get_prunable_weights(model).items():
        layer_zeros, size = floor.count_zeros([keras.ops.convert_to_numpy(kernel)])
        layers[name] = layer_zeros / max(size, 1)
        total += size
        zeros += layer_zeros
    parameters = int(sum(np.prod(w.shape) for w in model.weights))
    return {
        "sparsity": zeros / total if total else 0.0,
        "prunable_weights": int(total),
        "zero_weights": int(zeros),
        "parameters": parameters,
        "nonzero_parameters": parameters - int(zeros),
        "layers": layers,
    }


def strip_if_masked(model: keras.Model) -> Tuple[keras.Model, bool]:
    """Returns `(deployable model, whether masks were stripped)`.

    Uses `epsd_tf.pruning.has_masks` / `strip_masks`.
    """
    from epsd_tf.pruning import has_masks, strip_masks

    if not isinstance(model, keras.Model):
        raise ValueError(
            f"export expects a keras.Model, got {type(model).__name__}.")
    if not has_masks(model):
        return model, False
    logging.info("Model %s still holds pruning masks; stripping them before "
                 "export (kernels already hold the zeros).", model.name)
    return strip_masks(model), True


def save_keras(model: keras.Model, path: str, overwrite: bool = False) -> str:
    """Saves `model` as a `.keras` archive at `path`, atomically."""
    if not path.endswith(".keras"):
        raise ValueError(f"Keras archive path must end in '.keras', got {path!r}.")
    files.check_destination(path, overwrite)
    return floor.save_model(model, path, overwrite)


def save_saved_model(model: keras.Model, path: str,
                     overwrite: bool = False) -> str:
    """Writes a TF SavedModel with a `serving_default` signature (`model.export`).

    The signature takes the model's input with a free batch dimension and
    returns its logits; TFLite conversion starts from this directory.
    """
    with files.atomic_path(path, overwrite, is_dir=True) as temporary:
        model.export(temporary, format="tf_saved_model", verbose=False)
    return path


def load_saved_model_fn(path: str):
    """Returns a callable `images -> logits (np.ndarray)` for a SavedModel dir."""
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    signature = loaded.signatures["serving_default"]
    input_name = list(signature.structured_input_signature[1].keys())[0]

    def predict(images: np.ndarray) -> np.ndarray:
        outputs = signature(**{input_name: tf.constant(images)})
        return next(iter(outputs.values())).numpy()

    return predict
