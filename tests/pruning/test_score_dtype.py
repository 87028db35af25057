"""float64 scoring (issue 14): an independent float64 meta-gradient, the
float32-vs-float64 stability diagnostic, and the `score_dtype` contract."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from epsd_tf import pruning
from epsd_tf.pruning import masks as masks_lib
from epsd_tf.pruning import stability
from tests.pruning.helpers import batches, small_cnn

IN, HIDDEN, OUT, BATCH = 4, 6, 3, 8
LR = 0.5


def dense_bn_model():
    """Dense -> BatchNorm -> tanh -> Dense: smooth, so finite differences apply."""
    keras.utils.set_random_seed(7)
    x = keras.Input((IN,))
    h = keras.layers.Dense(HIDDEN, name="fc1")(x)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Activation("tanh")(h)
    return keras.Model(x, keras.layers.Dense(OUT, name="fc2")(h))


def plain_batches(count):
    rng = np.random.default_rng(11)
    return [(rng.normal(size=(BATCH, IN)).astype("float32"),
             rng.integers(0, OUT, BATCH).astype("int32")) for _ in range(count)]


def reference_scores(model, data, inner_steps):
    """ProsPr scores by central finite differences on the mask, in float64.

    The forward pass is written out by hand (matmul, batch-statistics
    BatchNorm, tanh, matmul) and the inner SGD steps use a plain float64
    gradient, so nothing of epsd_tf's scoring code is reused.
    """
    bn = model.get_layer("bn")
    params0 = [tf.constant(v.numpy(), tf.float64) for v in (
        model.get_layer("fc1").kernel, model.get_layer("fc1").bias, bn.gamma, bn.beta,
        model.get_layer("fc2").kernel, model.get_layer("fc2").bias)]
    eps = float(bn.epsilon)

    def loss(params, x, y):
        w1, b1, gamma, beta, w2, b2 = params
        h = tf.constant(x, tf.float64) @ w1 + b1
        mean, var = tf.reduce_mean(h, 0), tf.math.reduce_variance(h, 0)
        h = tf.tanh(gamma * (h - mean) / tf.sqrt(var + eps) + beta)
        logits = h @ w2 + b2
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))

    def unrolled(m1, m2):
        params = list(params0)
        params[0], params[4] = params0[0] * m1, params0[4] * m2
        for k in range(inner_steps):
            with tf.GradientTape() as tape:
                tape.watch(params)
                value = loss(params, *data[k])
            params = [p - LR * g for p, g in zip(params, tape.gradient(value, params))]
        return float(loss(params, *data[inner_steps]))

    ones = [np.ones(params0[0].shape), np.ones(params0[4].shape)]
    deltas, h = [np.zeros(m.shape) for m in ones], 1e-3

    def at(which, index, step):
        masks = [m.copy() for m in ones]
        masks[which][index] += step
        return unrolled(*masks)

    for which in range(2):
        for index in np.ndindex(*ones[which].shape):  # fourth-order central difference
            deltas[which][index] = (at(which, index, -2 * h) - 8 * at(which, index, -h)
                                    + 8 * at(which, index, h) - at(which, index, 2 * h)) / (12 * h)
    total = sum(np.abs(d).sum() for d in deltas)
    return {"fc1/kernel": np.abs(deltas[0]) / total, "fc2/kernel": np.abs(deltas[1]) / total}


@pytest.mark.parametrize("inner_steps", [1, 2])
def test_float64_scores_equal_a_finite_difference_meta_gradient(inner_steps):
    model, data = dense_bn_model(), plain_batches(inner_steps + 1)
    reference = reference_scores(model, data, inner_steps)
    scores = pruning.score(model, data, "prospr", inner_steps=inner_steps, inner_lr=LR,
                           score_dtype="float64")
    for name, expected in reference.items():
        assert scores[name].dtype == np.float64
        np.testing.assert_allclose(scores[name], expected, rtol=1e-8, atol=1e-14)


def test_float64_scoring_leaves_the_model_and_the_returned_network_in_float32():
    model, data = dense_bn_model(), plain_batches(3)
    before = [v.numpy().copy() for v in model.weights]
    pruned, report = pruning.prune_at_init(model, data, 0.5, scorer="prospr",
                                           inner_steps=2, score_dtype="float64")
    assert all(v.dtype == "float32" for v in pruned.weights)
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.weights))
    assert report["settings"]["score_dtype"] == "float64"
    # The masks are those of the float64 scores, nothing else.
    scores = pruning.score(model, data, "prospr", inner_steps=2, score_dtype="float64")
    expected = masks_lib.masks_from_scores(scores, 0.5)
    for name, mask in pruning.get_masks(pruned).items():
        np.testing.assert_array_equal(mask, expected[name])


def test_snip_is_stable_between_float32_and_float64():
    # No inner steps and no BatchNorm: float32 round-off barely moves the ranking.
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, name="fc1"),
                              keras.layers.Activation("tanh"), keras.layers.Dense(5, name="fc2")])
    rng = np.random.default_rng(0)
    data = [(rng.normal(size=(64, 16)).astype("float32"), rng.integers(0, 5, 64))]
    _, report = pruning.prune_at_init(model, data, 0.8, scorer="snip", score_stability=True)
    stable = report["score_stability"]
    assert stable["dtypes"] == ["float32", "float64"]
    assert stable["global"] >= 0.99
    assert set(stable["layers"]) == {"fc1/kernel", "fc2/kernel"}
    assert all(row["kept_overlap"] >= 0.9 for row in report["layers"])
    assert "kept-set overlap" in pruning.format_report(report)


def test_kept_overlap_counts_the_shared_kept_weights():
    a = {"w": np.array([1, 1, 0, 0.]), "v": np.array([[1, 0], [0, 0.]])}
    b = {"w": np.array([1, 0, 1, 0.]), "v": np.array([[1, 0], [0, 0.]])}
    result = stability.kept_overlap(a, b)
    assert result["global"] == pytest.approx(2 / 3)
    assert result["layers"] == {"w": 0.5, "v": 1.0}
    assert stability.kept_overlap(a, a)["global"] == 1.0
    with pytest.raises(ValueError, match="different weights"):
        stability.kept_overlap(a, {"w": a["w"]})


@pytest.mark.parametrize("bad", ["float16", "double", None])
def test_bad_score_dtype_is_rejected_before_scoring(bad):
    model = small_cnn()
    with pytest.raises(ValueError, match="Unknown score_dtype .*valid: \\['float32', 'float64'\\]"):
        pruning.prune_at_init(model, batches(count=1), 0.5, scorer="snip", score_dtype=bad)
    with pytest.raises(ValueError, match="Unknown score_dtype"):
        pruning.make_scorer(model, batches(count=1), "snip", score_dtype=bad)


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.fc = keras.layers.Dense(3, name="fc")

    def call(self, x, training=False):
        return self.fc(x)


def test_an_uncloneable_model_scores_in_float32_only():
    model = Subclassed()
    model(np.zeros((1, IN), "float32"))
    scores = pruning.score(model, None, "magnitude")
    np.testing.assert_array_equal(scores["fc/kernel"], np.abs(model.fc.kernel.numpy()))
    with pytest.raises(ValueError, match="Could not clone model"):
        pruning.score(model, None, "magnitude", score_dtype="float64")
