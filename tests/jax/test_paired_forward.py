"""DLB's two forwards as one vmapped call on JAX (`train_step_jax.TrainingForward`):
the same logits, gradients and BatchNorm statistics as two calls in order."""

import jax
import keras
import numpy as np
import pytest
from keras import ops

from epsd_tf import pruning
from epsd_tf.distill.train_step_jax import TrainingForward
from tests import students


def _pruned_student():
    student = pruning.wrap(students.conv_student())
    rng = np.random.default_rng(0)
    pruning.set_masks(student, {name: (rng.random(mask.shape) < 0.5).astype("float32")
                                for name, mask in pruning.get_masks(student).items()})
    return student


def _dropout_student():
    inputs = keras.Input(students.IMAGE_SHAPE)
    hidden = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    hidden = keras.layers.BatchNormalization()(hidden)
    hidden = keras.layers.Dropout(0.5, seed=1)(keras.layers.GlobalAveragePooling2D()(hidden))
    return keras.Model(inputs, keras.layers.Dense(3)(hidden))


def _regularised_student():
    inputs = keras.Input(students.IMAGE_SHAPE)
    hidden = keras.layers.Conv2D(4, 3, padding="same", activity_regularizer="l2")(inputs)
    hidden = keras.layers.BatchNormalization()(hidden)
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(hidden)))


def _loss_grads_and_state(student, paired: bool):
    """A loss of both logits, its gradient and the state after the two forwards."""
    images, views, _ = students.arrays(8)
    first, second = images, 2.0 * views + 1.0  # different batch statistics
    trainable = [v.value for v in student.trainable_variables]
    non_trainable = [v.value for v in student.non_trainable_variables]

    def loss(trainable):
        mapping = (list(zip(student.trainable_variables, trainable))
                   + list(zip(student.non_trainable_variables, non_trainable)))
        with keras.StatelessScope(state_mapping=mapping, collect_losses=True) as scope:
            forward = TrainingForward(student)
            a, b = forward.pair(first, second) if paired else (forward(first), forward(second))
            state = [scope.get_current_value(v) for v in student.non_trainable_variables]
        return ops.sum(a ** 2) + ops.sum(ops.sin(b)), (a, b, state)

    (value, aux), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(trainable)
    return [np.asarray(x) for x in jax.tree.leaves((value, aux, grads))]


@pytest.mark.parametrize("make", [students.conv_student, _pruned_student],
                         ids=["conv_bn", "pruned"])
def test_paired_forward_equals_two_forwards_in_order(make):
    student = make()
    sequential = _loss_grads_and_state(student, paired=False)
    paired = _loss_grads_and_state(student, paired=True)
    assert len(paired) == len(sequential)
    for a, b in zip(paired, sequential):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("make", [_dropout_student, _regularised_student],
                         ids=["seed_state", "activity_loss"])
def test_other_state_or_losses_fall_back_to_two_calls(make):
    student = make()
    sequential = _loss_grads_and_state(student, paired=False)
    paired = _loss_grads_and_state(student, paired=True)
    for a, b in zip(paired, sequential):
        np.testing.assert_array_equal(a, b)
