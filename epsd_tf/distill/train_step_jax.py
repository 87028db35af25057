"""JAX half of the training seam of `SelfDistillationModel`.

Keras' JAX trainer jits `train_step(state, data)` with
`state = (trainable, non_trainable, optimizer, metrics)` value lists and
purges the variables' own values during `fit` (see the Keras guide
"Customizing what happens in fit() with JAX"). The step maps that state onto
the model's variables with `keras.StatelessScope`, so the backend-neutral,
stateful-looking code of `SelfDistillationModel` (`sd_loss`,
`finish_train_step`, `evaluate_batch`) runs unchanged and its assignments —
BatchNorm statistics, DLB's carried batch, PS-KD's table rows, the metrics —
come back as new state values. Nothing of the method is duplicated here.

Masks need nothing here: the pruning wrapper's forward pass multiplies each
kernel by its mask, so pruned weights get exactly zero gradients and stay 0,
as under stock `fit` and on TF (`pruning/wrapper.py`).
"""

from __future__ import annotations

import jax
import keras
from keras import ops


def _values(scope, variables, defaults) -> list:
    """Each variable's value at the end of `scope` (its default if unassigned)."""
    values = []
    for variable, default in zip(variables, defaults):
        value = scope.get_current_value(variable)
        values.append(default if value is None else value)
    return values


class TrainingForward:
    """The student in training mode, as `methods.*.objective` calls it.

    `pair(first, second)` is `(forward(first), forward(second))` — two
    separate forwards, so BatchNorm normalises each batch with its own
    statistics (DLB's two views; Shen et al., CVPR 2022, official code) — run
    as ONE `jax.vmap`-ed call over the stacked batches: each convolution is one
    launch of 2b rows while BatchNorm's moments stay per vmapped instance. The
    moving statistics come back per instance, `m_a = mu*m0 + (1-mu)*a` and
    `m_b = mu*m0 + (1-mu)*b` (Keras' update); the sequential result
    `mu*m_a + (1-mu)*b` is `mu*m_a + m_b - mu*m0` (equal up to float rounding).
    If the forward writes any other state (renorm, a seed generator, a custom
    layer's statistics) or adds losses (activity regularisers), or the batches
    differ in shape, `pair` makes the two calls.
    """

    def __init__(self, student: keras.Model):
        self.student = student
        self._momenta = {}  # id(moving statistic) -> its BatchNormalization momentum
        for layer in student._flatten_layers(include_self=False):
            if isinstance(layer, keras.layers.BatchNormalization) and not layer.renorm:
                for variable in (layer.moving_mean, layer.moving_variance):
                    self._momenta[id(variable)] = layer.momentum

    def __call__(self, images):
        return self.student(images, training=True)

    def pair(self, first, second):
        """`(forward(first), forward(second))`, in one vmapped call when exact."""
        if tuple(first.shape) == tuple(second.shape):
            try:
                return self._vmapped_pair(first, ops.cast(second, first.dtype))
            except _UnpairableForward:
                pass  # the trace is dropped; run the forwards one after the other
        return self(first), self(second)

    def _vmapped_pair(self, first, second):
        student = self.student
        variables = student.variables
        values = [v.value for v in variables]  # the enclosing scope's (traced) values
        moving = [v for v in variables if id(v) in self._momenta]

        def forward(images):
            with keras.StatelessScope(state_mapping=list(zip(variables, values)),
                                      collect_losses=True) as scope:
                originals = [scope.get_current_value(v) for v in variables]
                logits = student(images, training=True)
            for variable, original in zip(variables, originals):
                if (id(variable) not in self._momenta
                        and scope.get_current_value(variable) is not original):
                    raise _UnpairableForward(variable.path)
            if scope.losses:
                raise _UnpairableForward("losses")
            return logits, [scope.get_current_value(v) for v in moving]

        logits, updated = jax.vmap(forward)(ops.stack([first, second]))
        old = {id(v): value for v, value in zip(variables, values)}
        for variable, new in zip(moving, updated):
            momentum = ops.cast(self._momenta[id(variable)], new.dtype)
            variable.assign(momentum * new[0] + new[1] - momentum * old[id(variable)])
        return logits[0], logits[1]


class _UnpairableForward(Exception):
    """The forward writes state (or losses) that a vmapped pair cannot combine."""


def training_forward(student: keras.Model) -> TrainingForward:
    """The forward `SelfDistillationModel.sd_loss` hands to the method's objective."""
    return TrainingForward(student)


def train_step(model, state, data):
    """`jax.value_and_grad` of `model.sd_loss`, the update, then carry and metrics."""
    trainable, non_trainable, optimizer_values, metric_values = state
    trainable_vars = model.trainable_variables
    non_trainable_vars = model.non_trainable_variables
    optimizer_vars = model.optimizer.variables
    metric_vars = model.metrics_variables
    features, labels = model.unpack_batch(data)

    def loss_fn(trainable):
        mapping = (list(zip(trainable_vars, trainable))
                   + list(zip(non_trainable_vars, non_trainable))
                   + list(zip(optimizer_vars, optimizer_values)))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            scaled, parts = model.sd_loss(features, labels)
        return scaled, (parts, _values(scope, non_trainable_vars, non_trainable))

    (_, (parts, non_trainable)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        trainable)
    trainable, optimizer_values = model.optimizer.stateless_apply(
        optimizer_values, grads, trainable)

    mapping = (list(zip(trainable_vars, trainable))
               + list(zip(non_trainable_vars, non_trainable))
               + list(zip(optimizer_vars, optimizer_values))
               + list(zip(metric_vars, metric_values)))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        logs = model.finish_train_step(features, labels, parts)
    non_trainable = _values(scope, non_trainable_vars, non_trainable)
    metric_values = _values(scope, metric_vars, metric_values)
    return logs, (trainable, non_trainable, optimizer_values, metric_values)


def test_step(model, state, data):
    """`model.evaluate_batch` with `state = (trainable, non_trainable, metrics)`."""
    trainable, non_trainable, metric_values = state
    variables = (model.trainable_variables, model.non_trainable_variables,
                 model.metrics_variables)
    mapping = [pair for group, values in zip(variables, state)
               for pair in zip(group, values)]
    with keras.StatelessScope(state_mapping=mapping) as scope:
        logs = model.evaluate_batch(data)
    return logs, (trainable, _values(scope, variables[1], non_trainable),
                  _values(scope, variables[2], metric_values))
