"""Invariants of the SD losses and method objects (METHOD.md §4)."""

import numpy as np
import pytest
import tensorflow as tf

from epsd_tf.distill import losses, methods
from tests.distill import helpers  # noqa: F401  (sets TF log level)


def _kl_reference(teacher, student, temperature):
    def log_softmax(z):
        z = z / temperature
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))
    t, s = log_softmax(teacher), log_softmax(student)
    return (np.exp(t) * (t - s)).sum(-1) * temperature**2


def test_distillation_loss_is_zero_when_teacher_and_student_agree():
    logits = np.random.default_rng(0).normal(size=(5, 7)).astype("float32")
    for method in (methods.DLB(), methods.CSKD()):
        np.testing.assert_allclose(method.distillation_loss(logits, logits), 0.0, atol=1e-6)
    # Agreement up to an additive constant per row is agreement of the softmax.
    np.testing.assert_allclose(losses.distillation_kl(logits, logits + 3.0, 4.0), 0.0,
                               atol=1e-5)


def test_distillation_loss_matches_reference_and_scales_with_t_squared():
    rng = np.random.default_rng(1)
    teacher = rng.normal(size=(6, 5)).astype("float32")
    student = rng.normal(size=(6, 5)).astype("float32")
    for temperature in (1.0, 3.0, 4.0):
        np.testing.assert_allclose(losses.distillation_kl(teacher, student, temperature),
                                   _kl_reference(teacher, student, temperature), rtol=1e-4)
        # Logits scaled by T give the T=1 distributions: the loss is T² times the T=1 one.
        np.testing.assert_allclose(
            losses.distillation_kl(teacher * temperature, student * temperature, temperature),
            temperature**2 * losses.distillation_kl(teacher, student, 1.0), rtol=1e-4)
    weighted = methods.CSKD(temperature=4.0, distillation_weight=2.5)
    np.testing.assert_allclose(weighted.distillation_loss(teacher, student),
                               2.5 * _kl_reference(teacher, student, 4.0), rtol=1e-4)


def test_no_gradient_reaches_the_teacher():
    rng = np.random.default_rng(2)
    teacher = tf.Variable(rng.normal(size=(3, 4)).astype("float32"))
    student = tf.Variable(rng.normal(size=(3, 4)).astype("float32"))
    pskd = methods.PSKD()
    with tf.GradientTape(persistent=True) as tape:
        kl = tf.reduce_sum(methods.DLB().distillation_loss(teacher, student))
        soft = tf.reduce_sum(pskd.loss(tf.nn.softmax(teacher), student))
    for loss in (kl, soft):
        teacher_grad, student_grad = tape.gradient(loss, [teacher, student])
        assert teacher_grad is None or np.all(teacher_grad.numpy() == 0)
        assert np.abs(student_grad.numpy()).sum() > 0


def test_pskd_schedule_and_soft_targets():
    pskd = methods.PSKD(alpha=0.8)
    np.testing.assert_allclose([float(pskd.target_weight(e, 4)) for e in range(4)],
                               [0.2, 0.4, 0.6, 0.8], rtol=1e-6)
    previous = np.array([[0.5, 0.5, 0.0]], "float32")
    np.testing.assert_allclose(pskd.soft_targets(np.array([2]), previous, 0.5),
                               [[0.25, 0.25, 0.5]])


@pytest.mark.parametrize("make, message", [
    (lambda: methods.DLB(temperature=0.0), "temperature must be > 0"),
    (lambda: methods.CSKD(temperature=-1.0), "temperature must be > 0"),
    (lambda: methods.DLB(distillation_weight=-0.1), "distillation_weight must be >= 0"),
    (lambda: methods.PSKD(alpha=1.5), "alpha must be in"),
    (lambda: methods.get("kd"), "Unknown self-distillation method 'kd'"),
])
def test_bad_hyperparameters_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()
