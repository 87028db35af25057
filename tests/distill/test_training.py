"""SelfDistillationModel in model.fit: metrics, XLA, mixed precision, masks,
resume, saving, bad input (METHOD.md §4)."""


import keras
import numpy as np
import pytest
import tensorflow as tf

from epsd_tf import data, pruning
from epsd_tf.distill import methods
from epsd_tf.distill.metrics import ExpectedCalibrationError
from epsd_tf.distill.model import SelfDistillationModel
from tests import students
from tests.distill import helpers

METHODS = ("none", "dlb", "cskd", "pskd")


def _model(kind, student=None, num_examples=16, epochs=2, batch_size=4):
    student = student or helpers.conv_student()
    return SelfDistillationModel(student, kind, batch_size=batch_size,
                                 num_examples=num_examples, epochs=epochs)


def test_training_and_evaluation_metrics():
    model = _model("dlb")
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    images, _, labels = helpers.arrays(16, 12)
    history = model.fit(helpers.dataset("dlb", num_classes=12), epochs=1, verbose=0,
                        validation_data=(images, labels))
    assert set(history.history) == {
        "loss", "ce_loss", "sd_loss", "accuracy", "top5_accuracy",
        "val_loss", "val_nll", "val_accuracy", "val_top5_accuracy", "val_ece"}
    result = model.evaluate(images, labels, return_dict=True, verbose=0)
    assert result["loss"] == pytest.approx(result["nll"])
    small = _model("none", helpers.conv_student(num_classes=3))
    small.compile(optimizer="sgd")
    logs = small.fit(helpers.dataset("none"), epochs=1, verbose=0).history
    assert "top5_accuracy" not in logs  # only with more than 10 classes


def test_expected_calibration_error_by_hand():
    metric = ExpectedCalibrationError(num_bins=10, from_logits=False)
    probabilities = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.45, 0.55]])
    labels = np.array([0, 1, 0, 0])
    metric.update_state(labels, probabilities)
    # Bin (0.9, 1]: 2 examples, acc 0.5, conf 0.95; bin (0.5, 0.6]: 2, acc 0.5, conf 0.55.
    expected = 0.5 * abs(0.5 - 0.95) + 0.5 * abs(0.5 - 0.55)
    assert float(metric.result()) == pytest.approx(expected, rel=1e-5)
    metric.reset_state()
    assert float(metric.result()) == 0.0


@pytest.mark.parametrize("kind", METHODS)
def test_every_method_trains_with_xla(kind):
    model = _model(kind)
    model.compile(optimizer=keras.optimizers.SGD(0.05), jit_compile=True)
    history = model.fit(helpers.dataset(kind, num_classes=12), epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    if kind != "none":
        assert history.history["sd_loss"][-1] > 0


@pytest.mark.parametrize("kind", ["dlb", "pskd"])
def test_mixed_float16_trains_with_loss_scaling(kind):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _model(kind)
        model.compile(optimizer=keras.optimizers.SGD(0.05))
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        history = model.fit(helpers.dataset(kind, num_classes=12), epochs=2, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.all(np.isfinite(history.history["loss"]))
    assert history.history["sd_loss"][-1] > 0


@pytest.mark.parametrize("kind", ["dlb", "pskd"])
def test_masked_weights_stay_exactly_zero(kind):
    student = pruning.wrap(helpers.conv_student())
    rng = np.random.default_rng(0)
    masks = {name: (rng.random(mask.shape) < 0.5).astype("float32")
             for name, mask in pruning.get_masks(student).items()}
    pruning.set_masks(student, masks)
    model = _model(kind, student)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True))
    model.fit(helpers.dataset(kind, num_classes=12), epochs=2, verbose=0)
    weights = pruning.get_prunable_weights(student)
    for name, mask in masks.items():
        kernel = weights[name].numpy()
        assert np.all(kernel[mask == 0] == 0.0), name
        assert np.any(kernel[mask == 1] != 0.0), name


@pytest.mark.parametrize("kind", ["dlb", "pskd"])
def test_backup_and_restore_resumes_with_method_state(kind, tmp_path):
    backup = str(tmp_path / "backup")
    batches = helpers.dataset(kind, num_classes=12)  # 4 batches per epoch
    first = _model(kind, epochs=3)
    first.compile(optimizer=keras.optimizers.SGD(0.1))
    recorder = students.StateRecorder(crash_at=(1, 2))
    with pytest.raises(students.Crash):
        first.fit(batches, epochs=3, verbose=0, callbacks=[
            keras.callbacks.BackupAndRestore(backup, save_freq=1), recorder])
    saved = recorder.after_batch  # state after epoch 1, batch 1: the last backup

    second = _model(kind, helpers.conv_student(seed=7), epochs=3)  # fresh weights, state
    second.compile(optimizer=keras.optimizers.SGD(0.1))
    resumed = students.StateRecorder()
    second.fit(batches, epochs=3, verbose=0, callbacks=[
        keras.callbacks.BackupAndRestore(backup, save_freq=1), resumed])
    assert len(resumed.at_start) == len(saved) >= 2
    for restored, expected in zip(resumed.at_start, saved):
        np.testing.assert_array_equal(restored, expected)
    assert resumed.epochs == [1, 2]  # resumed inside the interrupted run
    assert any(np.any(v != 0) for v in saved if v.ndim >= 1)  # non-trivial state
    if kind == "pskd":
        assert int(resumed.at_start[0]) == 1  # epoch counter restored


def test_trained_student_saves_and_loads_as_keras_file(tmp_path):
    model = _model("cskd")
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    model.fit(helpers.dataset("cskd", num_classes=12), epochs=1, verbose=0)
    path = str(tmp_path / "student.keras")
    model.student.save(path)
    loaded = keras.models.load_model(path)
    images, _, _ = helpers.arrays(4)
    np.testing.assert_allclose(loaded(images), model.student(images), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict(images, verbose=0), model.student(images),
                               rtol=1e-5, atol=1e-6)


def test_end_to_end_with_the_data_package():
    splits = data.load("synthetic", source="synthetic", batch_size=8, num_examples=48,
                       num_test=16, image_shape=(8, 8, 1), num_classes=4)
    for kind in METHODS:
        method = methods.get(kind)
        student = keras.Sequential([
            keras.Input(splits.info.image_shape), keras.layers.Conv2D(4, 3),
            keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4)])
        model = SelfDistillationModel(student, method, batch_size=8,
                                      num_examples=splits.info.num_train, epochs=1)
        model.compile(optimizer=keras.optimizers.SGD(0.05))
        history = model.fit(data.for_method(splits, method), epochs=1, verbose=0,
                            validation_data=splits.validation)
        assert np.isfinite(history.history["val_nll"][-1]), kind
        result = model.evaluate(splits.test, return_dict=True, verbose=0)
        assert 0.0 <= result["ece"] <= 1.0


@pytest.mark.parametrize("build, message", [
    (lambda: _model("kd"), "Unknown self-distillation method 'kd'"),
    (lambda: _model(methods.DLB(temperature=0.0)), "temperature must be > 0"),
    (lambda: _model("dlb", batch_size=None), "DLB needs batch_size > 0"),
    (lambda: _model("pskd", num_examples=None), "PS-KD needs num_examples > 0"),
    (lambda: _model("pskd", epochs=None), "PS-KD needs epochs > 0"),
])
def test_bad_construction_raises(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_bad_fit_inputs_raise_before_training():
    dlb = _model("dlb", batch_size=8)
    dlb.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="DLB was built with batch_size=8"):
        dlb.fit(helpers.dataset("dlb", batch_size=4), verbose=0)
    unbatched = helpers.dataset("dlb", batch_size=4).unbatch().batch(8)  # last batch may be short
    with pytest.raises(ValueError, match=r"yields batches of None"):
        dlb.fit(unbatched, verbose=0)
    images, views, labels = helpers.arrays(8)
    with pytest.raises(ValueError, match="DLB needs a tf.data.Dataset"):
        dlb.fit({"image": images, "image_view1": views}, labels, verbose=0)
    with pytest.raises(ValueError, match="compile without loss="):
        dlb.compile(optimizer="sgd", loss="mse")
    pskd = _model("pskd", epochs=2)
    pskd.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="runs past the PS-KD schedule"):
        pskd.fit(helpers.dataset("pskd"), epochs=3, verbose=0)
    assert pskd.optimizer.iterations.numpy() == 0  # nothing trained


def test_pskd_example_ids_beyond_the_table_fail_before_training():
    # 16 examples per epoch, a table of 8 rows: a clear ValueError, not a gather error.
    model = _model("pskd", num_examples=8, epochs=1)
    model.compile(optimizer="sgd")
    with pytest.raises(ValueError, match=r"yields 16 examples per epoch but the PS-KD "
                                         r"table has num_examples=8 rows"):
        model.fit(helpers.dataset("pskd", num_examples=16, num_classes=12), epochs=1,
                  verbose=0)
    assert model.optimizer.iterations.numpy() == 0  # nothing trained
    # Ids out of range that the up-front check cannot see (unknown cardinality) still
    # fail at the first step with a message naming the fix.
    unknown = helpers.dataset("pskd", num_examples=16, num_classes=12).filter(
        lambda x, y: True)
    with pytest.raises(tf.errors.InvalidArgumentError, match="PS-KD example_id outside"):
        model.fit(unknown, epochs=1, verbose=0)
