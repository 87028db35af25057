"""Tests for epsd_tf.analysis.landscape and plots (Li et al. 2018)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf

from epsd_tf import analysis, models


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    return models.build("small_cnn", (8, 8, 1), 3, filters=(4, 8), dense_units=16)


def _data(n=13, batch=5, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(n, 8, 8, 1)).astype("float32")
    labels = rng.integers(0, 3, size=n).astype("int32")
    return images, labels, tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch)


def _all_weights(model):
    return [keras.ops.convert_to_numpy(w).copy() for w in model.weights]


def _filter_norms(array, depthwise=False):
    axes = tuple(range(array.ndim - (2 if depthwise else 1)))
    return np.sqrt(np.sum(array.astype(np.float64) ** 2, axis=axes))


def test_loss_at_offset_zero_equals_model_evaluate():
    model = _model()
    _, _, dataset = _data()  # 13 examples in batches of 5, 5, 3: checks example weighting
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    loss, accuracy = model.evaluate(dataset, verbose=0)
    direction = analysis.random_direction(model, seed=1)
    result = analysis.landscape_1d(model, dataset, direction, [-0.5, 0.0, 0.5])
    assert result["loss"][1] == pytest.approx(loss, rel=1e-5)
    assert result["accuracy"][1] == pytest.approx(accuracy, abs=1e-6)
    assert result["loss"][0] != pytest.approx(loss, rel=1e-3)  # the direction moves the loss
    assert result["alphas"].tolist() == [-0.5, 0.0, 0.5]


def test_weights_are_restored_exactly():
    model = _model()
    before = _all_weights(model)
    _, _, dataset = _data()
    dx = analysis.random_direction(model, seed=1)
    dy = analysis.random_direction(model, seed=2)
    result = analysis.landscape_2d(model, dataset, dx, dy, [-1.0, 0.3, 1.0], [-0.7, 0.0])
    assert result["loss"].shape == (3, 2) and result["accuracy"].shape == (3, 2)
    for old, new in zip(before, _all_weights(model)):
        np.testing.assert_array_equal(old, new)


def test_2d_grid_matches_1d_along_an_axis():
    model = _model()
    _, _, dataset = _data()
    dx = analysis.random_direction(model, seed=1)
    dy = analysis.random_direction(model, seed=2)
    line = analysis.landscape_1d(model, dataset, dx, [-1.0, 0.0, 1.0])
    plane = analysis.landscape_2d(model, dataset, dx, dy, [-1.0, 0.0, 1.0], [0.0, 1.0])
    np.testing.assert_allclose(plane["loss"][:, 0], line["loss"], rtol=1e-5)
    assert not np.allclose(plane["loss"][:, 1], line["loss"])


def test_filter_normalised_direction_has_the_weights_filter_norms():
    model = _model()
    direction = analysis.random_direction(model, seed=0)
    assert set(direction) == {v.path for v in model.trainable_variables}
    for variable in model.trainable_variables:
        weights = keras.ops.convert_to_numpy(variable)
        values = direction[variable.path]
        assert values.shape == weights.shape and values.dtype == np.float32
        if weights.ndim <= 1:  # biases and BN gamma/beta are not perturbed
            assert not values.any(), variable.path
        else:
            np.testing.assert_allclose(_filter_norms(values), _filter_norms(weights), rtol=1e-5)


def test_depthwise_filters_are_normalised_per_channel():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(inputs)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    kernel = model.get_layer("dw").kernel
    values = analysis.random_direction(model, seed=0)[kernel.path]  # [3, 3, 3, 2]
    norms = _filter_norms(values, depthwise=True)
    assert norms.shape == (3, 2)
    np.testing.assert_allclose(norms, _filter_norms(keras.ops.convert_to_numpy(kernel),
                                                    depthwise=True), rtol=1e-5)


def test_pruned_weights_get_zero_direction_and_filters_keep_their_norms():
    model = _model()
    layer = model.get_layer("fc")
    kernel, bias = layer.get_weights()
    kernel[np.random.default_rng(0).random(kernel.shape) < 0.7] = 0.0
    kernel[:, 3] = 0.0  # a fully pruned filter
    layer.set_weights([kernel, bias])
    values = analysis.random_direction(model, seed=5)[layer.kernel.path]
    assert np.all(values[kernel == 0] == 0)
    assert np.all(values[kernel != 0] != 0)
    np.testing.assert_allclose(_filter_norms(values), _filter_norms(kernel), rtol=1e-5, atol=1e-7)


def test_direction_is_seeded_and_unnormalised_option():
    model = _model()
    a = analysis.random_direction(model, seed=3)
    b = analysis.random_direction(model, seed=3)
    c = analysis.random_direction(model, seed=4)
    raw = analysis.random_direction(model, seed=3, filter_normalize=False)
    path = model.get_layer("fc").kernel.path
    np.testing.assert_array_equal(a[path], b[path])
    assert not np.allclose(a[path], c[path])
    assert raw[path].std() == pytest.approx(1.0, rel=0.1)
    assert not np.allclose(raw[path], a[path])


def test_mismatched_direction_and_empty_data_raise():
    model = _model()
    _, _, dataset = _data()
    wider = analysis.random_direction(models.build("small_cnn", (8, 8, 1), 3), seed=0)
    with pytest.raises(ValueError, match=r"direction\['block1_conv/kernel'\] has shape"):
        analysis.landscape_1d(model, dataset, wider, [0.0])
    direction = analysis.random_direction(model, seed=0)
    partial = {k: v for k, v in direction.items() if k != "logits/bias"}
    with pytest.raises(ValueError, match="does not match the model's trainable variables"):
        analysis.landscape_1d(model, dataset, partial, [0.0])
    with pytest.raises(ValueError, match="yielded no"):
        analysis.landscape_1d(model, [], direction, [0.0])
    with pytest.raises(ValueError, match="num_batches must be >= 1"):
        analysis.landscape_1d(model, dataset, direction, [0.0], num_batches=0)


def test_plots_write_png_files(tmp_path):
    model = _model()
    _, _, dataset = _data()
    dx = analysis.random_direction(model, seed=1)
    dy = analysis.random_direction(model, seed=2)
    grid = np.linspace(-1, 1, 5)
    one = analysis.plot_landscape_1d(analysis.landscape_1d(model, dataset, dx, grid),
                                     str(tmp_path / "plots" / "line.png"), title="1-D")
    two = analysis.plot_landscape_2d(
        analysis.landscape_2d(model, dataset, dx, dy, grid, grid, num_batches=1),
        str(tmp_path / "plots" / "contour.png"))
    for path in (one, two):
        with open(path, "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="missing"):
        analysis.plot_landscape_2d({"alphas": grid}, str(tmp_path / "bad.png"))


def test_landscape_stage_writes_files_and_summarises(tmp_path):
    model = _model()
    _, _, dataset = _data()
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    loss = model.evaluate(dataset, verbose=0)
    before = _all_weights(model)
    summary = analysis.loss_landscape(model, dataset, str(tmp_path / "landscape"), points=5,
                                      radius=0.5, num_batches=None, seed=3, points_2d=3)
    assert summary["loss_at_0"] == pytest.approx(loss, rel=1e-5)
    saved = analysis.read_landscape(str(tmp_path))  # a workdir holding landscape/... also works
    assert saved == analysis.read_landscape(str(tmp_path / "landscape"))
    assert saved["alphas"] == pytest.approx([-0.5, -0.25, 0.0, 0.25, 0.5])
    assert np.asarray(saved["2d"]["loss"]).shape == (3, 3)
    assert saved["2d"]["loss"][1][1] == pytest.approx(loss, rel=1e-5)
    expected = analysis.landscape_1d(model, dataset, analysis.random_direction(model, 3),
                                     saved["alphas"])
    np.testing.assert_allclose(saved["loss"], expected["loss"], rtol=1e-5)
    assert summary["sharpness_full"] == pytest.approx(
        (saved["loss"][0] + saved["loss"][4]) / 2 - saved["loss"][2], rel=1e-6)
    assert summary["max_loss"] == pytest.approx(max(saved["loss"]))
    for name in ("landscape_1d.png", "landscape_2d.png"):
        assert (tmp_path / "landscape" / name).read_bytes()[:4] == b"\x89PNG"
    for b, a in zip(before, _all_weights(model)):
        np.testing.assert_array_equal(a, b)


def test_sharpness_of_a_parabola_and_bad_stage_settings(tmp_path):
    from epsd_tf.analysis.landscape_stage import sharpness
    alphas = np.linspace(-1, 1, 9)
    parabola = {"alphas": alphas, "loss": 2.0 + alphas ** 2}
    assert sharpness(parabola, 0.5) == pytest.approx(0.25)
    assert sharpness(parabola, 1.0) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="outside"):
        sharpness(parabola, 2.0)
    model, (_, _, dataset) = _model(), _data()
    for kwargs, message in [({"points": 4}, "odd"), ({"points_2d": 2}, "points_2d"),
                            ({"radius": 0.0}, "radius")]:
        with pytest.raises(ValueError, match=message):
            analysis.loss_landscape(model, dataset, str(tmp_path), **kwargs)
    with pytest.raises(FileNotFoundError, match="run.landscape"):
        analysis.read_landscape(str(tmp_path / "nothing"))
