"""The EPSD scoring objective at inner step k is the training loss at step k.

For the same initial weights and the same batches, the loss the EPSD scorer
differentiates after k unrolled SGD steps (`meta_gradient.inner_losses`) equals
the loss `SelfDistillationModel` reports at training step k with plain SGD at
the same learning rate, for every method (issue 10; METHOD.md §2 and §4). The
scorer updates every trainable variable with `θ - lr·g` as `keras.optimizers.SGD`
does, and BatchNorm runs in training mode on both sides, so the two runs follow
the same trajectory. Any change to how either side forms or reduces its loss,
its carry, or its update breaks the equality.

What differs by design is only where PS-KD's carry comes from: the scorer
reuses one batch and passes the previous inner step's prediction with weight
`alpha`; training reads last epoch's prediction from its float16 table with
weight `a_t = alpha·(t + 1)/epochs`. With one batch per epoch and
`epochs = k + 1`, `a_k = alpha` and the table holds step k-1's prediction, so
the losses agree up to the table's float16 rounding — for k <= 1 with SGD
steps (epoch 0 has weight 0 on both sides), and for every k with learning rate
0 (a run of 3 epochs trains epoch 1 with a_1 = 2/3·alpha, not the scorer's alpha,
so its trajectory leaves the scorer's after step 1).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from epsd_tf.distill import methods
from epsd_tf.distill.model import SelfDistillationModel
from epsd_tf.pruning import meta_gradient
from epsd_tf.pruning.model_state import ModelState
from tests.distill import helpers

B, CLASSES, STEPS, LR = 4, 3, 3, 0.5


def _batches(kind: str, count: int) -> list:
    images, views, labels = helpers.arrays(count * B, CLASSES, seed=11)
    labels = np.random.default_rng(4).integers(0, CLASSES, count * B).astype("int32")
    out = []
    for t in range(count):
        rows = slice(t * B, (t + 1) * B)
        x = helpers.features(kind, images[rows], views[rows], np.arange(B))
        out.append((x, labels[rows]))
    return out


def _scoring_losses(student, method, batches, steps=STEPS, lr=LR) -> np.ndarray:
    state = ModelState(student)
    values = meta_gradient.inner_losses(state, batches, method, steps - 1, lr)
    return np.array([float(v) for v in values])


def _trainer(student, method, epochs: int = 1, lr=LR):
    model = SelfDistillationModel(student, method, batch_size=B, num_examples=B,
                                  epochs=epochs)
    model.compile(optimizer=keras.optimizers.SGD(lr))
    return model


def _training_losses(student, method, batches) -> np.ndarray:
    model = _trainer(student, method)
    values = []
    for x, y in batches:
        model.reset_metrics()
        values.append(float(model.train_on_batch(x, y, return_dict=True)["loss"]))
    return np.array(values)


def _pskd_training_losses(student, method, batch, steps, lr) -> np.ndarray:
    """Loss at epoch k of a run of k + 1 one-batch epochs (a_k = alpha)."""
    initial = student.get_weights()
    data = tf.data.Dataset.from_tensors(batch)
    values = []
    for k in range(steps):
        student.set_weights(initial)
        history = _trainer(student, method, k + 1, lr).fit(data, epochs=k + 1, verbose=0)
        values.append(history.history["loss"][k])
    student.set_weights(initial)
    return np.array(values)


@pytest.mark.parametrize("name", ["none", "dlb", "cskd"])
def test_scoring_objective_equals_training_loss_step_by_step(name):
    method = methods.get(name)
    student = helpers.conv_student(num_classes=CLASSES)
    batches = _batches(name, STEPS)
    scoring = _scoring_losses(student, method, batches)   # pure: weights unchanged
    training = _training_losses(student, method, batches)
    np.testing.assert_allclose(scoring, training, rtol=2e-5, atol=1e-6)
    assert len(set(np.round(training, 4))) == STEPS  # the steps really moved


@pytest.mark.parametrize("steps, lr", [(2, LR), (STEPS, 0.0)])
def test_pskd_scoring_objective_equals_training_loss_step_by_step(steps, lr):
    method = methods.PSKD(alpha=0.8)
    student = helpers.conv_student(num_classes=CLASSES)
    batches = _batches("pskd", 1)  # the scorer reuses one batch (METHOD.md §2)
    scoring = _scoring_losses(student, method, batches, steps, lr)
    training = _pskd_training_losses(student, method, batches[0], steps, lr)
    np.testing.assert_allclose(scoring, training, rtol=1e-3)  # float16 table
    # Step 0 is plain CE on both sides; later steps distil (the weight is alpha).
    ce = _scoring_losses(student, methods.NoDistillation(), batches * steps, steps, lr)
    assert scoring[0] == pytest.approx(ce[0], rel=1e-6)
    assert abs(scoring[1] - ce[1]) > 1e-2
