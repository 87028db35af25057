"""Scorers: independent references, determinism, purity, EPSD special cases."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from epsd_tf import pruning
from epsd_tf.distill import losses
from tests.pruning.helpers import batches, labels


def normalised(scores):
    total = sum(np.abs(v).sum() for v in scores.values())
    return {k: np.abs(v) / total for k, v in scores.items()}


def all_values(model):
    return [v.numpy().copy() for v in model.variables]


def test_snip_matches_independent_abs_g_theta(model):
    data = batches(count=2)
    scores = pruning.score(model, data, "snip", num_batches=2)
    kernels = pruning.get_prunable_weights(model)
    with tf.GradientTape() as tape:
        loss = sum(tf.reduce_mean(losses.cross_entropy(y, model(x, training=True)))
                   for x, y in data)
    grads = tape.gradient(loss, list(kernels.values()))
    for (name, kernel), g in zip(kernels.items(), grads):
        np.testing.assert_allclose(scores[name], np.abs(g.numpy() * kernel.numpy()),
                                   rtol=1e-4, atol=1e-9)


def test_prospr_full_second_order_matches_finite_differences():
    # Linear softmax model: the unrolled SGD step can be written in numpy (float64).
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="fc")])
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(6, 4)).astype("float32") for _ in range(2)]
    ys = [rng.integers(0, 3, 6).astype("int32") for _ in range(2)]
    w0, b0 = (v.numpy().astype("float64") for v in model.layers[0].weights)
    lr = 0.5

    def ce_and_grads(w, b, x, y):
        logits = x @ w + b
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        loss = -np.mean(np.log(p[np.arange(len(y)), y]))
        d = (p - np.eye(3)[y]) / len(y)
        return loss, x.T @ d, d.sum(0)

    def unrolled(m):
        w = m * w0
        _, gw, gb = ce_and_grads(w, b0, xs[0], ys[0])
        return ce_and_grads(w - lr * gw, b0 - lr * gb, xs[1], ys[1])[0]

    eps = 1e-6
    delta = np.zeros_like(w0)
    for index in np.ndindex(*w0.shape):
        plus, minus = np.ones_like(w0), np.ones_like(w0)
        plus[index] += eps
        minus[index] -= eps
        delta[index] = (unrolled(plus) - unrolled(minus)) / (2 * eps)
    expected = np.abs(delta) / np.abs(delta).sum()
    data = list(zip(xs, ys))
    full = pruning.score(model, data, "prospr", inner_steps=1, inner_lr=lr)["fc/kernel"]
    np.testing.assert_allclose(full, expected, rtol=1e-3, atol=1e-6)
    first = pruning.score(model, data, "prospr", inner_steps=1, inner_lr=lr,
                          first_order=True)["fc/kernel"]
    assert np.abs(first - expected).max() > 1e-4
    # First order: the plain gradient at θ_1 times θ_init.
    _, gw, gb = ce_and_grads(w0, b0, xs[0], ys[0])
    _, gw1, _ = ce_and_grads(w0 - lr * gw, b0 - lr * gb, xs[1], ys[1])
    first_expected = np.abs(gw1 * w0) / np.abs(gw1 * w0).sum()
    np.testing.assert_allclose(first, first_expected, rtol=1e-3, atol=1e-6)


def test_epsd_with_zero_inner_steps_is_sd_loss_snip(model):
    data = batches("class_pairs", count=1)
    epsd = pruning.score(model, data, "epsd", method="cskd", inner_steps=0)
    snip = normalised(pruning.score(model, data, "snip", method="cskd"))
    ce_snip = normalised(pruning.score(model, data, "snip"))
    for name in epsd:
        np.testing.assert_allclose(epsd[name], snip[name], rtol=1e-4, atol=1e-9)
    # ... and the CS-KD term matters: it is not the CE score.
    assert max(np.abs(epsd[n] - ce_snip[n]).max() for n in epsd) > 1e-6


@pytest.mark.parametrize("method,kind", [("dlb", "two_views"), ("pskd", "example_ids")])
def test_first_order_and_full_meta_gradients_differ_and_are_finite(tiny, method, kind):
    data = batches(kind, count=2)
    full = pruning.score(tiny, data, "epsd", method=method, inner_steps=1)
    first = pruning.score(tiny, data, "epsd", method=method, inner_steps=1,
                          first_order=True)
    for scores in (full, first):
        assert all(np.all(np.isfinite(v)) for v in scores.values())
        np.testing.assert_allclose(sum(v.sum() for v in scores.values()), 1.0, rtol=1e-5)
    assert max(np.abs(full[n] - first[n]).max() for n in full) > 1e-6


def test_epsd_differs_from_prospr_and_is_pure(tiny):
    data = batches("two_views", count=3)
    before = all_values(tiny)
    epsd = pruning.score(tiny, data, "epsd", method="dlb", inner_steps=2)
    prospr = pruning.score(tiny, [(x["image"], y) for x, y in data], "prospr",
                           inner_steps=2)
    assert max(np.abs(epsd[n] - prospr[n]).max() for n in epsd) > 1e-6
    for old, new in zip(before, all_values(tiny)):
        np.testing.assert_array_equal(old, new)  # BN statistics included


def test_scorers_are_deterministic_under_a_seed(model, tiny):
    data = batches("two_views", count=2)
    a = pruning.score(tiny, data, "epsd", method="dlb", inner_steps=1)
    b = pruning.score(tiny, data, "epsd", method="dlb", inner_steps=1)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    r1 = pruning.score(model, None, "random", seed=1)
    r2 = pruning.score(model, None, "random", seed=1)
    r3 = pruning.score(model, None, "random", seed=2)
    assert all(np.array_equal(r1[n], r2[n]) for n in r1)
    assert not any(np.array_equal(r1[n], r3[n]) for n in r1)


def test_grasp_sign_convention():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="tanh",
                                                                    name="h"),
                              keras.layers.Dense(3, name="out")])
    data = [(np.random.default_rng(0).normal(size=(6, 4)).astype("float32"),
             labels(6) % 3)]
    scores = pruning.score(model, data, "grasp")
    kernels = list(pruning.get_prunable_weights(model).values())
    x, y = data[0]

    def loss():
        return tf.reduce_mean(losses.cross_entropy(y, model(x) / 200.0))

    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            value = loss()
        g = inner.gradient(value, kernels)
        g_dot = sum(tf.reduce_sum(tf.stop_gradient(a) * a) for a in g)
    hg = outer.gradient(g_dot, kernels)
    for name, kernel, h in zip(["h/kernel", "out/kernel"], kernels, hg):
        np.testing.assert_allclose(scores[name], -kernel.numpy() * h.numpy(),
                                   rtol=1e-3, atol=1e-12)
    assert "grasp" in pruning.PRUNE_HIGHEST


def test_synflow_is_data_independent_and_positive(model):
    a = pruning.score(model, None, "synflow")
    b = pruning.score(model, batches(count=1), "synflow")
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
        assert np.all(a[name] >= 0) and np.any(a[name] > 0)


def test_magnitude_is_abs_theta_and_masks_set_theta(model):
    kernels = pruning.get_prunable_weights(model)
    scores = pruning.score(model, None, "magnitude")
    for name, kernel in kernels.items():
        np.testing.assert_array_equal(scores[name], np.abs(kernel.numpy()))
    masks = {n: np.zeros(k.shape, "float32") for n, k in kernels.items()}
    masks["fc/kernel"] = np.ones(kernels["fc/kernel"].shape, "float32")
    snip = pruning.score(model, batches(count=1), "snip", masks=masks)
    assert np.all(snip["fc/kernel"] == 0)  # no signal reaches fc through zero convs


def test_bad_scoring_inputs(model):
    with pytest.raises(ValueError, match="Unknown scorer 'nope'; valid scorers"):
        pruning.score(model, None, "nope")
    with pytest.raises(ValueError, match="does not take settings \\['inner_steps'\\]"):
        pruning.score(model, batches(), "snip", inner_steps=2)
    with pytest.raises(ValueError, match="needs 4 batch\\(es\\) but the dataset yielded only 2"):
        pruning.score(model, batches(count=2), "epsd", method="dlb", inner_steps=3)
    with pytest.raises(ValueError, match="Method .cskd. needs batches of"):
        pruning.score(model, batches("plain"), "epsd", method="cskd", inner_steps=0)
    x = keras.Input((4,))
    with pytest.raises(ValueError, match="has no prunable weights"):
        pruning.score(keras.Model(x, keras.layers.ReLU()(x)), None, "magnitude")
