"""Tests for epsd_tf.analysis.jsv (Mean-JSV, Lee et al. 2020)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf

from epsd_tf import models
from epsd_tf.analysis import mean_jsv
from epsd_tf.analysis.jsv import _input_jacobians


def _linear_model(seed=0):
    inputs = keras.Input((4, 3, 2))
    outputs = keras.layers.Dense(5, name="linear")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(seed)
    model.get_layer("linear").set_weights([rng.normal(size=(24, 5)).astype("float32"),
                                           rng.normal(size=(5,)).astype("float32")])
    return model


def _images(n, shape, seed=1):
    return np.random.default_rng(seed).normal(size=(n,) + shape).astype("float32")


@pytest.mark.parametrize("training", [False, True])
def test_linear_model_gives_the_singular_values_of_its_weight_matrix(training):
    model = _linear_model()
    kernel = model.get_layer("linear").get_weights()[0]  # [D=24, K=5]; J = kernel^T
    expected = np.linalg.svd(kernel.astype(np.float64), compute_uv=False).mean()
    result = mean_jsv(model, _images(7, (4, 3, 2)), training=training, batch_size=3)
    np.testing.assert_allclose(result["per_example"], np.full(7, expected), rtol=1e-5)
    assert result["mean"] == pytest.approx(expected, rel=1e-5)
    assert result["std"] == pytest.approx(0.0, abs=1e-5)


def test_scaling_the_logits_scales_mean_jsv():
    model = _linear_model()
    images = _images(4, (4, 3, 2))
    before = mean_jsv(model, images)["mean"]
    kernel, bias = model.get_layer("linear").get_weights()
    model.get_layer("linear").set_weights([3.0 * kernel, bias])
    assert mean_jsv(model, images)["mean"] == pytest.approx(3.0 * before, rel=1e-5)


def test_batching_does_not_change_the_result_for_a_nonlinear_model():
    model = models.build("small_cnn", (8, 8, 1), 3, filters=(4, 4), dense_units=8)
    images = _images(5, (8, 8, 1))
    one = mean_jsv(model, images, batch_size=1)
    five = mean_jsv(model, images, batch_size=5)
    np.testing.assert_allclose(one["per_example"], five["per_example"], rtol=1e-4)
    assert one["std"] > 0  # nonlinear: examples differ
    assert one["mean"] == pytest.approx(np.mean(one["per_example"]))


def test_training_mode_leaves_batchnorm_statistics_untouched():
    model = models.build("small_cnn", (8, 8, 1), 3, filters=(4,), dense_units=8)
    before = [keras.ops.convert_to_numpy(w) for w in model.non_trainable_weights]
    result = mean_jsv(model, 5.0 + _images(4, (8, 8, 1)), training=True, batch_size=4)
    assert np.all(np.isfinite(result["per_example"]))
    for old, new in zip(before, model.non_trainable_weights):
        np.testing.assert_array_equal(old, keras.ops.convert_to_numpy(new))


@pytest.mark.parametrize("training", [False, True])
def test_jacobian_matches_finite_differences(training):
    # In training mode BatchNorm couples the batch; the Jacobian of logits_i w.r.t.
    # x_i must include the path through the batch statistics.
    # float64 and a smooth activation so central differences are accurate.
    keras.utils.set_random_seed(3)
    inputs = keras.Input((6, 6, 1), dtype="float64")
    x = keras.layers.Conv2D(4, 3, dtype="float64")(inputs)
    x = keras.layers.BatchNormalization(dtype="float64")(x)
    x = keras.layers.Activation("tanh", dtype="float64")(x)
    x = keras.layers.Flatten(dtype="float64")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, dtype="float64")(x))
    images = _images(3, (6, 6, 1)).astype("float64")
    jacobians = _input_jacobians(model, tf.constant(images), training).reshape(3, 3, -1)
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def logits(x):
        return model.stateless_call(trainable, non_trainable, tf.constant(x),
                                    training=training)[0].numpy()

    step = np.random.default_rng(4).normal(size=(6, 6, 1))
    for i in range(3):
        plus, minus = images.copy(), images.copy()
        plus[i] += 1e-5 * step
        minus[i] -= 1e-5 * step
        finite_difference = (logits(plus)[i] - logits(minus)[i]) / 2e-5
        np.testing.assert_allclose(jacobians[i] @ step.reshape(-1), finite_difference,
                                   rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("images,message", [
    (np.zeros((0, 4, 3, 2), "float32"), "non-empty"),
    (np.zeros((2, 4, 3), "float32"), "shape [N, 4, 3, 2]"),
    (np.zeros((2, 4, 3, 1), "float32"), "the model expects (4, 3, 2)"),
])
def test_bad_images_raise(images, message):
    with pytest.raises(ValueError) as error:
        mean_jsv(_linear_model(), images)
    assert message in str(error.value)


def test_bad_batch_size_raises():
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        mean_jsv(_linear_model(), _images(2, (4, 3, 2)), batch_size=0)
