"""Loss landscape along filter-normalised random directions.

Li et al., "Visualizing the Loss Landscape of Neural Nets", NeurIPS 2018,
used by the EPSD paper (METHOD.md §5) to compare the sharpness of pruned
networks trained with and without self-distillation.

A direction is a dict `{variable.path: float32 array}` over the model's
trainable variables. `random_direction` draws it as in Li et al. ("filter"
normalisation, `ignore="biasbn"`):

* every entry ~ N(0, 1), seeded;
* variables of rank <= 1 (biases, BatchNorm gamma/beta) get a zero direction;
  BN moving statistics are non-trainable and never touched;
* **pruned weights stay pruned [ours]**: the direction is zero wherever the
  weight is exactly 0, so a pruned network's landscape is explored inside its
  own sparse subspace (the masks of `epsd_tf.pruning` keep pruned kernels at 0);
* each filter `d_f` is rescaled to `d_f · ‖θ_f‖ / ‖d_f‖`. A filter is one output
  unit: the last axis of a Conv/Dense kernel (`[kh, kw, in, out]`, `[in, out]`),
  and one `(in, multiplier)` channel of a depthwise kernel (`[kh, kw, in, mult]`),
  matching PyTorch's per-output-channel slices in Li et al.'s code.

`landscape_1d/2d` evaluate the loss at `θ + α·d1 (+ β·d2)` with the model in
inference mode (BN on its moving statistics) through `model.stateless_call`
on the perturbed values (compiled by the backend seam,
`epsd_tf.pruning.autodiff.function`): the model's variables are never changed.
"""

from __future__ import annotations

import itertools
from typing import Iterable, Sequence

import keras
import numpy as np
from keras import ops

from epsd_tf.distill import losses
from epsd_tf.pruning import autodiff

_EPSILON = 1e-10  # avoids 0/0 for fully pruned filters (their direction stays 0)


def _walk_layers(layer) -> Iterable[keras.layers.Layer]:
    """Yields `layer` and every layer nested in it (models, wrappers)."""
    yield layer
    for child in getattr(layer, "layers", []) or []:
        yield from _walk_layers(child)
    inner = getattr(layer, "layer", None)  # keras.layers.Wrapper (e.g. the pruning mask)
    if isinstance(inner, keras.layers.Layer):
        yield from _walk_layers(inner)


def _depthwise_kernel_paths(model: keras.Model) -> set[str]:
    """Paths of depthwise kernels, whose filters are indexed by the last two axes."""
    paths = set()
    for layer in _walk_layers(model):
        if isinstance(layer, (keras.layers.DepthwiseConv2D, keras.layers.DepthwiseConv1D)):
            paths.add(layer.kernel.path)
        elif isinstance(layer, (keras.layers.SeparableConv2D, keras.layers.SeparableConv1D)):
            paths.add(layer.depthwise_kernel.path)
    return paths


def _trainable_by_path(model: keras.Model) -> dict[str, keras.Variable]:
    variables = {}
    for variable in model.trainable_variables:
        if variable.path in variables:
            raise ValueError(f"Model has two trainable variables with path {variable.path!r}; "
                             "directions are keyed by path, so paths must be unique")
        variables[variable.path] = variable
    return variables


def random_direction(model: keras.Model, seed: int, filter_normalize: bool = True
                     ) -> dict[str, np.ndarray]:
    """Draws a (filter-normalised) random direction in weight space.

    Args:
        model: the (trained) model; its current weights set the filter norms.
        seed: seed of the N(0, 1) draw (same seed + same model -> same direction).
        filter_normalize: rescale each filter to the weight filter's norm (Li et
            al.). When False the raw Gaussian is returned, with the same zeros.

    Returns:
        `{variable.path: float32 array of the variable's shape}` for every
        trainable variable of `model`.
    """
    rng = np.random.default_rng(seed)
    depthwise = _depthwise_kernel_paths(model)
    direction = {}
    for path, variable in _trainable_by_path(model).items():
        weights = np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float64)
        values = rng.standard_normal(weights.shape)
        if weights.ndim <= 1:
            values = np.zeros_like(weights)
        values = np.where(weights == 0, 0.0, values)  # pruned weights stay pruned
        if filter_normalize and weights.ndim > 1:
            # Reduce over every axis but the filter axes: [..., out] or [..., in, mult].
            axes = tuple(range(weights.ndim - (2 if path in depthwise else 1)))
            weight_norms = np.sqrt(np.sum(weights ** 2, axis=axes, keepdims=True))
            direction_norms = np.sqrt(np.sum(values ** 2, axis=axes, keepdims=True))
            values = values * weight_norms / (direction_norms + _EPSILON)
        direction[path] = values.astype(np.float32)
    return direction


def _materialise(data, num_batches: int | None) -> list:
    """Takes the evaluation batches once, so every grid point sees the same data."""
    if num_batches is not None and num_batches < 1:
        raise ValueError(f"num_batches must be >= 1 or None, got {num_batches!r}")
    batches = list(itertools.islice(iter(data), num_batches))
    if not batches:
        raise ValueError("dataset_or_batches yielded no (images, labels) batches")
    for batch in batches:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise ValueError("dataset_or_batches must yield (images, labels) pairs, got "
                             f"a {type(batch).__name__}")
    return [(ops.convert_to_tensor(x, "float32"), ops.convert_to_tensor(y)) for x, y in batches]


def _check_direction(direction: dict, variables: dict[str, keras.Variable], label: str) -> None:
    if set(direction) != set(variables):
        missing = sorted(set(variables) - set(direction))[:3]
        extra = sorted(set(direction) - set(variables))[:3]
        raise ValueError(f"{label} does not match the model's trainable variables "
                         f"(missing e.g. {missing}, unknown e.g. {extra}); "
                         "draw it with random_direction(model, seed)")
    for path, variable in variables.items():
        if tuple(np.shape(direction[path])) != tuple(variable.shape):
            raise ValueError(f"{label}[{path!r}] has shape {np.shape(direction[path])}, "
                             f"the variable has {tuple(variable.shape)}")


def _evaluate(forward, trainable, non_trainable, batches) -> tuple[float, float]:
    """Example-weighted mean cross-entropy and accuracy (as `model.evaluate` weights)."""
    loss_sum, correct, count = 0.0, 0.0, 0
    for images, labels in batches:
        loss, hits = forward(trainable, non_trainable, images, labels)
        loss_sum += float(loss)
        correct += float(hits)
        count += int(images.shape[0])
    return loss_sum / count, correct / count


def _grid(model, data, directions, coefficient_grid, num_batches):
    """Loss/accuracy at `θ + Σ_k c_k · d_k` for each coefficient tuple (θ untouched)."""
    variables = _trainable_by_path(model)
    for label, direction in directions.items():
        _check_direction(direction, variables, label)
    batches = _materialise(data, num_batches)
    originals = {path: keras.ops.convert_to_numpy(v).copy() for path, v in variables.items()}
    position = {id(v): i for i, v in enumerate(model.trainable_variables)}
    order = sorted(variables, key=lambda path: position[id(variables[path])])
    non_trainable = [v.value for v in model.non_trainable_variables]

    # Every value is an argument of the compiled forward, not a constant in it, so
    # every seed's landscape runs one program (the persistent compilation cache).
    def forward(trainable, non_trainable, images, labels):
        """Summed cross-entropy and correct count of one batch at `trainable`."""
        logits, _ = model.stateless_call(trainable, non_trainable, images, training=False)
        logits = ops.cast(logits, "float32")  # [B, K]
        labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        hits = ops.cast(ops.equal(ops.cast(ops.argmax(logits, axis=-1), "int32"), labels),
                        "float32")
        return ops.sum(losses.cross_entropy(labels, logits)), ops.sum(hits)

    forward = autodiff.function(forward)
    results = []
    for coefficients in coefficient_grid:
        trainable = []
        for path in order:
            offset = sum(c * d[path] for c, d in zip(coefficients, directions.values()))
            trainable.append(ops.convert_to_tensor(
                (originals[path] + offset).astype(originals[path].dtype)))
        results.append(_evaluate(forward, trainable, non_trainable, batches))
    return np.array(results, dtype=np.float64)  # [points, 2]: loss, accuracy


def landscape_1d(model: keras.Model, dataset_or_batches, direction: dict,
                 alphas: Sequence[float], *, num_batches: int | None = None) -> dict:
    """Loss and accuracy along `θ + α·d` (Li et al. 2018, 1-D plot).

    Args:
        model: a Keras model returning logits.
        dataset_or_batches: a finite iterable (tf.data or list) of
            `(images, int labels)` batches; taken once (first `num_batches`).
        direction: from `random_direction(model, seed)`.
        alphas: step sizes; include 0.0 to get the trained point itself.
        num_batches: evaluate on this many batches only (None: all).

    Returns:
        `{"alphas": [A], "loss": [A], "accuracy": [A]}` numpy arrays; loss is the
        example-weighted mean sparse cross-entropy, like `model.evaluate`.
    """
    alphas = np.asarray(alphas, dtype=np.float64).reshape(-1)
    values = _grid(model, dataset_or_batches, {"direction": direction},
                   [(a,) for a in alphas], num_batches)
    return {"alphas": alphas, "loss": values[:, 0], "accuracy": values[:, 1]}


def landscape_2d(model: keras.Model, dataset_or_batches, direction_x: dict,
                 direction_y: dict, alphas: Sequence[float], betas: Sequence[float], *,
                 num_batches: int | None = None) -> dict:
    """Loss and accuracy on the plane `θ + α·d_x + β·d_y` (Li et al. 2018, contours).

    Args: as `landscape_1d`, with two directions (draw them with different
    seeds) and the grid `alphas x betas`.

    Returns:
        `{"alphas": [A], "betas": [B], "loss": [A, B], "accuracy": [A, B]}`.
    """
    alphas = np.asarray(alphas, dtype=np.float64).reshape(-1)
    betas = np.asarray(betas, dtype=np.float64).reshape(-1)
    values = _grid(model, dataset_or_batches, {"direction_x": direction_x,
                                               "direction_y": direction_y},
                   list(itertools.product(alphas, betas)), num_batches)
    shape = (len(alphas), len(betas))
    return {"alphas": alphas, "betas": betas, "loss": values[:, 0].reshape(shape),
            "accuracy": values[:, 1].reshape(shape)}
