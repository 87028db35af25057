"""A model's parameters as plain tensors, for pure (stateless) scoring.

Scorers never touch a model's variables: they read the values once into a
`ModelState`, run `model.stateless_call` on tensors and drop every returned
state update (BatchNorm moving statistics included). The model is unchanged
after scoring.

The state is read from a scratch copy of the model (`scoring_copy`), never
returned to anyone: every layer in the score dtype (`"float64"` runs the whole
scoring computation in double precision, issue 14: how much of a mask is
float32 round-off), and BatchNormalization computing its batch variance without
the `stop_gradient` that `tf.nn.moments` puts on the mean. That stop is harmless
for first derivatives but drops terms from second derivatives, so the
second-order ProsPr/EPSD meta-gradient and GraSP's Hessian-gradient product
through BatchNorm were inexact (tests/pruning/test_score_dtype.py checks them
against finite differences).
"""

from __future__ import annotations

import copy
import itertools
from typing import Callable, Iterable, Mapping

import keras
import numpy as np
from absl import logging
from keras import ops

from epsd_tf.pruning import autodiff, model_masks
from epsd_tf.pruning.wrapper import PruneLowMagnitude


class ExactMomentsBatchNormalization(keras.layers.BatchNormalization):
    """BatchNormalization whose batch moments have exact second derivatives.

    `variance = mean((x - mean(x))²)` with the gradient flowing through both
    means (`keras.ops` on every backend). Used only inside scoring copies.
    """

    def _moments(self, inputs, mask):
        if mask is not None or self.synchronized:
            return super()._moments(inputs, mask)
        mean = ops.mean(inputs, axis=self._reduction_axes, keepdims=True)
        variance = ops.mean(ops.square(inputs - mean), axis=self._reduction_axes,
                            keepdims=True)
        return (ops.squeeze(mean, self._reduction_axes),
                ops.squeeze(variance, self._reduction_axes))


def scoring_copy(model: keras.Model, dtype: str) -> keras.Model:
    """A clone of `model` for scoring: layers in `dtype`, exact BatchNorm moments.

    Every layer is rebuilt with `dtype` as its dtype policy (wrapped layers
    included; plain `BatchNormalization` as `ExactMomentsBatchNormalization`);
    floating-point weights are cast in, others copied.
    """
    def retyped(layer):
        config = {**layer.get_config(), "dtype": dtype}
        if type(layer) is keras.layers.BatchNormalization:
            return ExactMomentsBatchNormalization.from_config(config)
        return layer.__class__.from_config(config)

    def cast_weights(layer):
        return lambda: [w.astype(dtype) if np.issubdtype(w.dtype, np.floating) else w
                        for w in layer.get_weights()]

    def transform(layer):
        if isinstance(layer, PruneLowMagnitude):
            new_layer = PruneLowMagnitude(retyped(layer.layer), dtype=dtype)
        else:
            new_layer = retyped(layer)
        return new_layer, new_layer, cast_weights(layer)

    return model_masks._clone(model, transform)


class ModelState:
    """Parameter tensors of `model`, read once.

    Attributes:
        model: the Keras model (only used through `stateless_call`).
        names: prunable weight names (see `model_masks`), in model order.
        prunable_index: position of each prunable kernel in
            `model.trainable_variables`.
        theta_init: the prunable kernels' current values, unmasked.
        trainable_init: values of `model.trainable_variables`.
        non_trainable: values of `model.non_trainable_variables`.
        dtype: the dtype of the scoring computation and of the scores.
    """

    def __init__(self, model: keras.Model, dtype: str = "float32"):
        if dtype not in ("float32", "float64"):
            raise ValueError(f"Unknown score dtype {dtype!r}; valid: ['float32', 'float64']")
        model_masks.prunable_weights(model)  # a clear error if unbuilt
        try:
            model = scoring_copy(model, dtype)
        except ValueError:
            if dtype != "float32":
                raise
            logging.warning("Model %r cannot be cloned; scoring it as it is (second "
                            "derivatives through BatchNorm are then inexact).", model.name)
        self.dtype = dtype
        weights = model_masks.prunable_weights(model)
        if not weights:
            raise ValueError(f"Model {model.name!r} has no prunable weights.")
        position = {id(v): i for i, v in enumerate(model.trainable_variables)}
        missing = [w.name for w in weights if id(w.variable) not in position]
        if missing:
            raise ValueError(f"Prunable weights {missing} are not trainable; scorers "
                             "differentiate trainable kernels only.")
        self.model = model
        self.names = [w.name for w in weights]
        self.prunable_index = [position[id(w.variable)] for w in weights]
        self.theta_init = [ops.convert_to_tensor(w.variable.value) for w in weights]
        self.trainable_init = [ops.convert_to_tensor(v.value)
                               for v in model.trainable_variables]
        self.non_trainable = [ops.convert_to_tensor(v.value)
                              for v in model.non_trainable_variables]

    def values(self) -> tuple:
        """The tensors that differ between seeds: `(trainable_init, non_trainable)`."""
        return self.trainable_init, self.non_trainable

    def at(self, values: tuple) -> ModelState:
        """This state with `values` (as `values()` returns them) as its tensors.

        Inside a compiled scorer `values` are the traced arguments, so the
        program holds no weights as constants (see `compile`).
        """
        view = copy.copy(self)
        view.trainable_init, view.non_trainable = list(values[0]), list(values[1])
        view.theta_init = view.prunable(view.trainable_init)
        return view

    def compile(self, compute: Callable, jit_compile: bool = False) -> Callable:
        """`compute(state, *args)` compiled (`autodiff.function`); returns `fn(*args)`.

        The state's tensors are arguments of the compiled function, not
        constants baked into it: two seeds of one configuration (same
        architecture, dtype, settings and batch shapes) lower to the same
        program, so JAX's persistent compilation cache (a sweep's
        `<root>/.jax_cache`) compiles it once, and every call of `fn` reuses
        one trace.
        """
        def scoring(values, *args):
            return compute(self.at(values), *args)
        scoring.__name__ = compute.__name__  # the compiled program's name
        compiled = autodiff.function(scoring, jit_compile=jit_compile)
        return lambda *args: compiled(self.values(), *args)

    def mask_list(self, masks: Mapping[str, np.ndarray] | None) -> list:
        """Masks as tensors in `names` order; ones for weights not in `masks`."""
        masks = dict(masks or {})
        unknown = sorted(set(masks) - set(self.names))
        if unknown:
            raise ValueError(f"Masks given for unknown weights {unknown}; prunable: "
                             f"{self.names}")
        return [ops.cast(masks[name], theta.dtype) if name in masks
                else ops.ones(theta.shape, theta.dtype)
                for name, theta in zip(self.names, self.theta_init)]

    def initial_trainable(self, mask_list: list) -> list:
        """Trainable values with each prunable kernel set to `m ⊙ θ_init`."""
        return self.with_prunable([t * m for t, m in zip(self.theta_init, mask_list)],
                                  self.trainable_init)

    def prunable(self, trainable: list) -> list:
        """The prunable kernels out of a full trainable list."""
        return [trainable[i] for i in self.prunable_index]

    def with_prunable(self, prunable_values: list, trainable: list | None = None) -> list:
        """A full trainable list with the prunable kernels replaced."""
        trainable = list(self.trainable_init if trainable is None else trainable)
        for index, value in zip(self.prunable_index, prunable_values):
            trainable[index] = value
        return trainable

    def logits(self, trainable: list, images, training: bool = True,
               non_trainable: list | None = None):
        """Model outputs `[batch, classes]`; state updates (BN statistics) dropped."""
        non_trainable = self.non_trainable if non_trainable is None else non_trainable
        outputs, _ = self.model.stateless_call(trainable, non_trainable, images,
                                               training=training)
        return outputs

    def to_scores(self, values: list) -> dict[str, np.ndarray]:
        """`{name: numpy array in self.dtype}` from a list in `names` order."""
        return {name: np.asarray(ops.convert_to_numpy(v), dtype=self.dtype)
                for name, v in zip(self.names, values)}


def image_of(x):
    """The plain image tensor of a batch input (`x` or `x["image"]`)."""
    if isinstance(x, Mapping):
        if "image" not in x:
            raise ValueError(f"Dict batch inputs need an 'image' key; got keys {sorted(x)}")
        return x["image"]
    return x


def take_batches(batches: Iterable, count: int, who: str) -> list:
    """The first `count` `(x, y)` batches of `batches`, or a ValueError if fewer."""
    if count == 0:
        return []
    if batches is None:
        raise ValueError(f"{who} needs {count} batch(es) of (x, y); got batches=None.")
    taken = list(itertools.islice(iter(batches), count))
    if len(taken) < count:
        raise ValueError(f"{who} needs {count} batch(es) but the dataset yielded only "
                         f"{len(taken)}; pass more data or fewer scoring batches.")
    for element in taken:
        if not (isinstance(element, (tuple, list)) and len(element) == 2):
            raise ValueError(f"Scoring batches must be (x, y) pairs; got {type(element)}")
    return [(x, y) for x, y in taken]
