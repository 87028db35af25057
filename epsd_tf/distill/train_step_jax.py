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


def _values(scope, variables, defaults) -> list:
    """Each variable's value at the end of `scope` (its default if unassigned)."""
    values = []
    for variable, default in zip(variables, defaults):
        value = scope.get_current_value(variable)
        values.append(default if value is None else value)
    return values


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
