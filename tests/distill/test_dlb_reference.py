"""DLB's loss and gradient against an independent float64 numpy reference.

The reference is the official DLB training step (Meta-knowledge-Lab/DLB,
`dlb.py`, `train_one_epoch`; issue 14) written out in numpy for a tiny
Dense -> BatchNorm -> tanh -> Dense network:

* two separate forward passes — view 0 of the current batch, view 1 of the
  previous batch — each normalised by BatchNorm with its OWN batch statistics;
* CE = one mean over the concatenated 2B logits = ½ (CE_current + CE_previous);
* KL = `batchmean` KL(softmax(z_prev / T) ‖ softmax(f(view 1 of x_prev) / T)) · T² · α,
  with z_prev the previous step's (pre-update) view-0 logits, detached;
* the first step (no previous batch): CE of the current view 0 only.

Gradients come from central finite differences of the numpy loss in float64,
and are compared with the update `SelfDistillationModel` applies with plain SGD
(training) and with the gradient of the EPSD scoring objective (scoring).
"""

import keras
import numpy as np
import tensorflow as tf

from epsd_tf.distill import methods
from epsd_tf.distill.model import SelfDistillationModel
from epsd_tf.pruning import autodiff, meta_gradient
from epsd_tf.pruning.model_state import ModelState
from tests.distill import helpers  # noqa: F401  (sets TF log level)

B, D, H, C = 6, 4, 5, 3
T, ALPHA, EPSILON, LR = 3.0, 0.7, 1e-3, 1.0
METHOD = methods.DLB(temperature=T, distillation_weight=ALPHA)


def _student() -> keras.Model:
    model = keras.Sequential([
        keras.Input((D,)), keras.layers.Dense(H),
        keras.layers.BatchNormalization(epsilon=EPSILON), keras.layers.Activation("tanh"),
        keras.layers.Dense(C)])
    rng = np.random.default_rng(0)
    # Non-trivial BatchNorm scale and shift, so their gradients are checked too.
    weights = [rng.normal(size=w.shape).astype("float32") * (0.8 if w.ndim > 1 else 0.5)
               for w in model.get_weights()]
    weights[4], weights[5] = np.zeros(H, "float32"), np.ones(H, "float32")  # moving stats
    model.set_weights(weights)
    return model


def _trainable(model) -> list:
    return [v.numpy().astype("float64") for v in model.trainable_variables]


def _forward(params, x, shared_with=None):
    """Numpy network in training mode; BN statistics over `x` (or `x` + `shared_with`)."""
    w1, b1, gamma, beta, w2, b2 = params
    h = x @ w1 + b1
    stats = h if shared_with is None else np.concatenate([h, shared_with @ w1 + b1])
    mean, var = stats.mean(0), stats.var(0)
    return np.tanh((h - mean) / np.sqrt(var + EPSILON) * gamma + beta) @ w2 + b2


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _ce(z, y):
    return -_log_softmax(z)[np.arange(len(y)), y]


def _kl(teacher, student):
    t, s = _log_softmax(teacher / T), _log_softmax(student / T)
    return (np.exp(t) * (t - s)).sum(-1) * T**2


def _reference(params, current, previous=None, teacher=None, shared_bn=False):
    """Official DLB loss `(ce, sd)` at `params`; `previous` = (view 1, labels)."""
    view0, y = current
    if previous is None:
        return _ce(_forward(params, view0), y).mean(), 0.0
    prev_view1, prev_y = previous
    z = _forward(params, view0, prev_view1 if shared_bn else None)
    z_prev = _forward(params, prev_view1, view0 if shared_bn else None)
    ce = np.concatenate([_ce(z, y), _ce(z_prev, prev_y)]).mean()
    return ce, ALPHA * _kl(teacher, z_prev).mean()


def _numeric_gradient(loss, params, eps=1e-6):
    grads = []
    for index, p in enumerate(params):
        g = np.zeros_like(p)
        for position in np.ndindex(*p.shape):
            plus = [q.copy() for q in params]
            minus = [q.copy() for q in params]
            plus[index][position] += eps
            minus[index][position] -= eps
            g[position] = (loss(plus) - loss(minus)) / (2 * eps)
        grads.append(g)
    return grads


def _batches():
    rng = np.random.default_rng(1)
    def batch():
        return ({"image": rng.normal(size=(B, D)).astype("float32"),
                 "image_view1": rng.normal(size=(B, D)).astype("float32")},
                rng.integers(0, C, B).astype("int32"))
    return [batch(), batch()]


def _assert_gradients(actual, expected):
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=2e-3, atol=2e-5)


def test_training_step_matches_official_dlb_loss_and_gradient():
    student = _student()
    model = SelfDistillationModel(student, METHOD, batch_size=B)
    model.compile(optimizer=keras.optimizers.SGD(LR))
    (x0, y0), (x1, y1) = _batches()

    # Step 0: CE of the current view 0 only.
    w0 = _trainable(student)
    logs = model.train_on_batch(x0, y0, return_dict=True)
    w1 = _trainable(student)
    ce0, _ = _reference(w0, (x0["image"], y0))
    np.testing.assert_allclose([logs["ce_loss"], logs["sd_loss"]], [ce0, 0.0],
                               rtol=1e-5, atol=1e-7)
    expected = _numeric_gradient(lambda p: sum(_reference(p, (x0["image"], y0))), w0)
    _assert_gradients([(a - b) / LR for a, b in zip(w0, w1)], expected)

    # Step 1: the official loss with per-half BatchNorm, teacher = step 0's logits.
    teacher = _forward(w0, x0["image"])
    def loss(p, **kwargs):
        return _reference(p, (x1["image"], y1), (x0["image_view1"], y0), teacher, **kwargs)
    model.reset_metrics()
    logs = model.train_on_batch(x1, y1, return_dict=True)
    w2 = _trainable(student)
    ce1, sd1 = loss(w1)
    np.testing.assert_allclose([logs["ce_loss"], logs["sd_loss"]], [ce1, sd1], rtol=1e-5)
    _assert_gradients([(a - b) / LR for a, b in zip(w1, w2)],
                      _numeric_gradient(lambda p: sum(loss(p)), w1))
    # The reference tells the variants apart: BN statistics shared over the 2B
    # images, or the two halves' CE means added instead of averaged.
    assert abs(sum(loss(w1, shared_bn=True)) - (ce1 + sd1)) > 1e-3
    assert abs((2 * ce1 + sd1) - (ce1 + sd1)) > 1e-1


def test_scoring_objective_matches_official_dlb_loss_and_gradient():
    student = _student()
    (x0, y0), (x1, y1) = _batches()
    state = ModelState(student)
    params = _trainable(student)
    carry = {"images": x0["image_view1"], "labels": y0,
             "logits": _forward(params, x0["image"]).astype("float32"),
             "has_previous": np.float32(1.0)}
    objective = meta_gradient.make_objective(state, METHOD)
    (value, new_carry), grads = autodiff.value_and_grad(objective, has_aux=True)(
        list(state.trainable_init), (x1, y1), carry)
    def loss(p):
        return sum(_reference(p, (x1["image"], y1), (x0["image_view1"], y0),
                              carry["logits"].astype("float64")))
    np.testing.assert_allclose(float(value), loss(params), rtol=1e-5)
    _assert_gradients([g.numpy() for g in grads], _numeric_gradient(loss, params))
    # The next step's teacher is this step's view-0 logits on the current batch.
    np.testing.assert_allclose(new_carry["logits"], _forward(params, x1["image"]),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(new_carry["images"], x1["image_view1"])
    # And the zero initial carry gives step 0: CE of view 0 only.
    first = meta_gradient.initial_carry(state, METHOD, (x1, y1))
    value0, _ = objective(list(state.trainable_init), (x1, y1), first)
    np.testing.assert_allclose(float(value0), _reference(params, (x1["image"], y1))[0],
                               rtol=1e-5)
    assert tf.reduce_all(tf.equal(first["has_previous"], 0.0))
