"""Model-level mask API: wrap, strip, get/set masks, list prunable weights.

Weight names (the keys of every score and mask dict in `epsd_tf.pruning`) are
`"<layer path>/<variable name>"`, where the layer path is the chain of layer
names from the top model down, wrappers transparent, the top model's own name
left out: `"conv1/kernel"`, `"backbone/block2_conv/kernel"`,
`"sep/pointwise_kernel"`. They are identical for a model and its wrapped or
stripped clone, so scores computed on a plain model index the masks of its
wrapped copy.
"""

from __future__ import annotations

from typing import Iterable, Mapping, NamedTuple

import keras
import numpy as np

from epsd_tf.pruning.wrapper import PruneLowMagnitude, is_prunable_layer, layer_prunable_weights


class PrunableWeight(NamedTuple):
    """One prunable variable: its stable name, layer path, layer, variable, mask."""
    name: str
    layer_path: str
    layer: keras.layers.Layer
    variable: keras.Variable
    mask: keras.Variable | None


def _walk(layer, prefix: str):
    """Yields `PrunableWeight`s under `layer` in layer order (depth first)."""
    if isinstance(layer, PruneLowMagnitude):
        path = prefix + layer.layer.name
        for variable, mask in zip(layer.get_prunable_weights(), layer.masks):
            yield PrunableWeight(f"{path}/{variable.name}", path, layer.layer, variable, mask)
    elif isinstance(layer, keras.Model):
        for sublayer in layer.layers:
            yield from _walk(sublayer, prefix + layer.name + "/")
    elif is_prunable_layer(layer):
        path = prefix + layer.name
        for variable in layer_prunable_weights(layer):
            yield PrunableWeight(f"{path}/{variable.name}", path, layer, variable, None)


def prunable_weights(model: keras.Model) -> list[PrunableWeight]:
    """All prunable weights of a built model, wrapped or not, in layer order.

    Raises:
        ValueError: if the model is not built.
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"Expected a keras.Model, got {type(model).__name__}.")
    if not model.built:
        raise ValueError(
            f"Model {model.name!r} is not built; call it on data or build it "
            "(e.g. give an Input shape) before pruning.")
    found = []
    for sublayer in model.layers:
        found.extend(_walk(sublayer, ""))
    return found


def get_prunable_weights(model: keras.Model) -> dict[str, keras.Variable]:
    """`{weight name: variable}` of every prunable kernel (see module docstring)."""
    return {w.name: w.variable for w in prunable_weights(model)}


def has_masks(model: keras.Model) -> bool:
    """True if any layer of `model` (nested models included) is a `PruneLowMagnitude`."""
    def visit(layer):
        if isinstance(layer, PruneLowMagnitude):
            return True
        return isinstance(layer, keras.Model) and any(visit(l) for l in layer.layers)
    return any(visit(l) for l in model.layers)


def check_keep_dense(model: keras.Model, keep_dense: Iterable[str]) -> tuple[str, ...]:
    """Validates layer names/paths to keep dense; returns them as a tuple.

    Raises:
        ValueError: naming any entry that matches no prunable layer.
    """
    keep_dense = (keep_dense,) if isinstance(keep_dense, str) else tuple(keep_dense)
    weights = prunable_weights(model)
    known = {w.layer.name for w in weights} | {w.layer_path for w in weights}
    unknown = [name for name in keep_dense if name not in known]
    if unknown:
        raise ValueError(
            f"keep_dense names {unknown} match no prunable layer; prunable layers: "
            f"{sorted({w.layer_path for w in weights})}")
    return keep_dense


def is_kept_dense(weight: PrunableWeight, keep_dense: tuple[str, ...]) -> bool:
    return weight.layer.name in keep_dense or weight.layer_path in keep_dense


def _clone(model: keras.Model, transform) -> keras.Model:
    """`clone_model` (recursive) with `transform(layer) -> (new layer, copy_to, mask_fn)`.

    Weights are copied from each source layer to `copy_to` after the clone is
    built (clone_model creates fresh variables); `mask_fn` maps the source
    layer's weight list before copying.
    """
    if not isinstance(model, keras.Model) or not model.built:
        raise ValueError(f"Expected a built keras.Model, got {model!r}.")
    copies = []

    def clone_function(layer):
        new_layer, copy_to, weights_fn = transform(layer)
        copies.append((copy_to, weights_fn))
        return new_layer

    try:
        clone = keras.models.clone_model(model, clone_function=clone_function,
                                         recursive=True)
    except ValueError as error:
        raise ValueError(
            f"Could not clone model {model.name!r} ({type(model).__name__}); masks "
            "need a Functional or Sequential model (nested ones allowed): "
            f"{error}") from error
    for copy_to, weights_fn in copies:
        copy_to.set_weights(weights_fn())
    return clone


def _fresh(layer):
    return layer.__class__.from_config(layer.get_config())


def wrap(model: keras.Model, keep_dense: Iterable[str] = ()) -> keras.Model:
    """Clones `model`, wrapping every prunable layer in `PruneLowMagnitude`.

    Masks start at ones, so the clone computes the same function as `model`.
    Layers named in `keep_dense` (layer name or path) stay unwrapped.

    Raises:
        ValueError: already-wrapped model, no prunable weights, unknown keep_dense
            name, or a model `clone_model` cannot clone (subclassed).
    """
    keep_dense = check_keep_dense(model, keep_dense)
    if has_masks(model):
        raise ValueError(f"Model {model.name!r} already has masks; strip_masks it first.")
    if not prunable_weights(model):
        raise ValueError(f"Model {model.name!r} has no prunable weights.")

    # Identify layers by object: names may repeat across nested models.
    dense_ids = {id(w.layer) for w in prunable_weights(model) if is_kept_dense(w, keep_dense)}

    def transform(layer):
        new_layer = _fresh(layer)
        if is_prunable_layer(layer) and id(layer) not in dense_ids:
            return PruneLowMagnitude(new_layer), new_layer, layer.get_weights
        return new_layer, new_layer, layer.get_weights

    return _clone(model, transform)


def prune_low_magnitude(model: keras.Model, masks: Mapping[str, np.ndarray] | None = None,
                        keep_dense: Iterable[str] = ()) -> keras.Model:
    """TF-MOT-style entry point: `wrap(model, keep_dense)` then `set_masks(masks)`."""
    wrapped = wrap(model, keep_dense)
    if masks is not None:
        set_masks(wrapped, masks)
    return wrapped


def strip_masks(model: keras.Model) -> keras.Model:
    """Clones `model` without wrappers; stripped kernels are `kernel * mask` exactly."""
    def transform(layer):
        if not isinstance(layer, PruneLowMagnitude):
            new_layer = _fresh(layer)
            return new_layer, new_layer, layer.get_weights
        inner = layer.layer
        new_layer = _fresh(inner)
        masked = {id(v): m for v, m in zip(layer.get_prunable_weights(), layer.masks)}

        def masked_weights():
            return [np.asarray(v.numpy() * masked[id(v)].numpy()) if id(v) in masked
                    else v.numpy() for v in inner.weights]
        return new_layer, new_layer, masked_weights

    return _clone(model, transform)


strip_pruning = strip_masks


def get_masks(model: keras.Model) -> dict[str, np.ndarray]:
    """`{weight name: 0/1 array}` for every wrapped kernel of `model`."""
    return {w.name: w.mask.numpy() for w in prunable_weights(model) if w.mask is not None}


def set_masks(model: keras.Model, masks: Mapping[str, np.ndarray]) -> None:
    """Assigns masks by weight name and zeroes the stored kernels where mask is 0.

    Raises:
        ValueError: a name with no mask in `model`, a shape mismatch, or values
            other than 0 and 1.
    """
    wrapped = {w.name: w for w in prunable_weights(model) if w.mask is not None}
    unknown = sorted(set(masks) - set(wrapped))
    if unknown:
        raise ValueError(f"Masks given for {unknown}, which have no mask in model "
                         f"{model.name!r}; masked weights: {sorted(wrapped)}")
    for name, value in masks.items():
        value = np.asarray(value)
        weight = wrapped[name]
        if tuple(value.shape) != tuple(weight.mask.shape):
            raise ValueError(f"Mask for {name!r} has shape {value.shape}, expected "
                             f"{tuple(weight.mask.shape)}.")
        if not np.all((value == 0) | (value == 1)):
            raise ValueError(f"Mask for {name!r} must contain only 0 and 1.")
        weight.mask.assign(value.astype(weight.mask.dtype))
        weight.variable.assign(weight.variable.numpy() * value.astype(weight.variable.dtype))
