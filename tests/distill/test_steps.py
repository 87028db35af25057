"""Each method's teacher and carried state inside SelfDistillationModel (METHOD.md §4)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from epsd_tf.distill import losses, methods, steps
from epsd_tf.distill.model import SelfDistillationModel
from tests.distill import helpers


def _step_logs(model, x, y):
    model.reset_metrics()
    return {k: float(v) for k, v in model.train_on_batch(x, y, return_dict=True).items()}


def test_dlb_teacher_is_previous_steps_stored_logits_of_previous_batch():
    b = 4
    student = helpers.dense_student()
    model = SelfDistillationModel(student, methods.DLB(temperature=3.0,
                                                       distillation_weight=0.7),
                                  batch_size=b)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    state = model.method_step
    images, views, labels = helpers.arrays(3 * b)
    labels = np.random.default_rng(5).integers(0, 3, 3 * b).astype("int32")
    previous = None
    for t in range(3):
        view0, view1, y = (a[t * b:(t + 1) * b] for a in (images, views, labels))
        logits_before = student(view0).numpy()  # weights of step t, before its update
        logs = _step_logs(model, {"image": view0, "image_view1": view1}, y)
        if previous is None:  # first step: CE of view 0 only, no KL
            assert logs["sd_loss"] == 0.0
            np.testing.assert_allclose(logs["ce_loss"],
                                       np.mean(losses.cross_entropy(y, logits_before)),
                                       rtol=1e-5)
        else:
            prev_view1, prev_y, prev_logits, student_prev = previous
            np.testing.assert_allclose(
                logs["sd_loss"],
                0.7 * np.mean(losses.distillation_kl(prev_logits, student_prev, 3.0)),
                rtol=1e-4)
            # Official DLB: one CE mean over the 2b logits = ½ (current + previous).
            np.testing.assert_allclose(
                logs["ce_loss"],
                0.5 * (np.mean(losses.cross_entropy(y, logits_before))
                       + np.mean(losses.cross_entropy(prev_y, student_prev))), rtol=1e-5)
        # State after step t: x_t's view 1, labels and the (pre-update) view-0 logits.
        carry = {k: v.numpy() for k, v in state.carry_variables.items()}
        np.testing.assert_array_equal(carry["images"], view1)
        np.testing.assert_array_equal(carry["labels"], y)
        np.testing.assert_allclose(carry["logits"], logits_before, rtol=1e-5)
        assert float(carry["has_previous"]) == 1.0
        # Student on view 1 of x_t with the weights step t+1 will use.
        previous = (view1, y, logits_before, student(view1).numpy())
    # The stored logits came from an older network than the current one.
    assert not np.allclose(student(view0).numpy(), state.carry_variables["logits"].numpy())


def test_cskd_teacher_is_the_partners_detached_prediction():
    student = helpers.dense_student()
    method = methods.CSKD(temperature=4.0, distillation_weight=1.0)
    images, pairs, labels = helpers.arrays(4)
    pair = tf.Variable(pairs)
    feats = {"image": tf.constant(images), "pair_image": pair}
    with tf.GradientTape() as tape:
        ce, sd, logits, carry = method.objective(
            lambda x: student(x, training=True), feats, labels, {})
        loss = tf.reduce_mean(ce + sd)
    pair_grad, *weight_grads = tape.gradient(loss, [pair] + student.trainable_variables)
    assert pair_grad is None
    assert all(g is not None for g in weight_grads)
    assert carry == {}
    np.testing.assert_allclose(
        sd, losses.distillation_kl(student(pairs), student(images), 4.0), rtol=1e-5)
    np.testing.assert_allclose(ce, losses.cross_entropy(labels, student(images)), rtol=1e-5)
    np.testing.assert_allclose(logits, student(images), rtol=1e-5)


def test_cskd_train_step_reports_kl_to_partner():
    student = helpers.dense_student()
    model = SelfDistillationModel(student, methods.CSKD(temperature=4.0,
                                                        distillation_weight=2.0))
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    images, pairs, labels = helpers.arrays(4)
    expected = 2.0 * np.mean(losses.distillation_kl(student(pairs), student(images), 4.0))
    logs = _step_logs(model, {"image": images, "pair_image": pairs}, labels)
    np.testing.assert_allclose(logs["sd_loss"], expected, rtol=1e-4)


class _Recorder(keras.callbacks.Callback):
    """Records, before each batch, the student's softmax on that batch and a_t."""

    def __init__(self, images, batch_size):
        super().__init__()
        self.images, self.batch_size = images, batch_size
        self.expected = np.zeros((len(images), 3), "float32")
        self.tables, self.weights = [], []

    def on_train_batch_begin(self, batch, logs=None):
        rows = slice(batch * self.batch_size, (batch + 1) * self.batch_size)
        logits = self.model.student(self.images[rows])
        self.expected[rows] = keras.ops.softmax(logits).numpy()
        self.weights.append(float(self.model.method_step.target_weight()))

    def on_epoch_end(self, epoch, logs=None):
        self.tables.append((self.model.method_step.predictions.numpy(), self.expected.copy()))


def test_pskd_table_holds_last_epochs_predictions_and_weight_follows_schedule():
    n, b, epochs = 8, 4, 3
    model = SelfDistillationModel(helpers.dense_student(), methods.PSKD(alpha=0.8),
                                  num_examples=n, epochs=epochs)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    images, _, _ = helpers.arrays(n)
    recorder = _Recorder(images, b)
    model.fit(helpers.dataset("pskd", n, b), epochs=epochs, callbacks=[recorder], verbose=0)
    assert model.method_step.predictions.dtype == "float16"
    for table, expected in recorder.tables:
        np.testing.assert_allclose(table.astype("float32"), expected, atol=2e-3)
    # Each epoch overwrote every row: epoch 2's table is not epoch 1's.
    assert not np.allclose(recorder.tables[1][0], recorder.tables[2][0], atol=1e-3)
    # a_t per epoch (two batches each): 0 at epoch 0, then 0.8·(e+1)/3.
    np.testing.assert_allclose(recorder.weights,
                               [0, 0, 0.8 * 2 / 3, 0.8 * 2 / 3, 0.8, 0.8], rtol=1e-6)
    assert int(model.epoch.numpy()) == epochs - 1


def test_pskd_loss_reads_the_table_with_the_epoch_weight():
    n = 4
    student = helpers.dense_student()
    step = steps.PSKDStep(methods.PSKD(alpha=0.8), num_examples=n, num_classes=3, epochs=4)
    table = np.random.default_rng(3).dirichlet(np.ones(3), size=n).astype("float16")
    step.predictions.assign(table)
    images, _, labels = helpers.arrays(n)
    ids = np.array([2, 0, 3, 1])
    feats = {"image": images, "example_id": ids}
    method = step.method

    def forward(x):
        return student(x, training=False)

    step.epoch.assign(0)
    ce0, sd0, _, _ = method.objective(forward, feats, labels, step.read_carry(feats))
    np.testing.assert_allclose(sd0, 0.0, atol=1e-6)  # epoch 0: one-hot target
    step.epoch.assign(1)
    carry = step.read_carry(feats)
    np.testing.assert_array_equal(carry["probabilities"], table[ids].astype("float32"))
    ce, sd, logits, new_carry = method.objective(forward, feats, labels, carry)
    weight = 0.8 * 2 / 4
    targets = (1 - weight) * np.eye(3)[labels] + weight * table[ids].astype("float32")
    np.testing.assert_allclose(ce + sd, losses.soft_cross_entropy(targets, logits), rtol=1e-4)
    np.testing.assert_allclose(ce, (1 - weight) * ce0, rtol=1e-5)
    # The new carry is this batch's prediction; training writes it to the rows.
    step.write_carry(feats, new_carry)
    np.testing.assert_allclose(step.predictions.numpy()[ids].astype("float32"),
                               keras.ops.softmax(logits).numpy(), atol=1e-3)


def test_none_method_is_plain_cross_entropy():
    student = helpers.dense_student()
    model = SelfDistillationModel(student, None)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    images, _, labels = helpers.arrays(4)
    expected = np.mean(losses.cross_entropy(labels, student(images)))
    logs = _step_logs(model, images, labels)
    assert logs["sd_loss"] == 0.0
    np.testing.assert_allclose([logs["ce_loss"], logs["loss"]], [expected] * 2, rtol=1e-5)


@pytest.mark.parametrize("kind", ["dlb", "cskd", "pskd"])
def test_batches_without_the_methods_keys_are_rejected_before_training(kind):
    model = SelfDistillationModel(helpers.dense_student(), kind, batch_size=4,
                                  num_examples=16, epochs=1)
    model.compile(optimizer="sgd")
    with pytest.raises(ValueError, match=f"Method '{kind}' needs"):
        model.fit(helpers.dataset("none"), epochs=1, verbose=0)
    wrong = "dlb" if kind != "dlb" else "pskd"
    with pytest.raises(ValueError, match="missing"):
        model.fit(helpers.dataset(wrong), epochs=1, verbose=0)
