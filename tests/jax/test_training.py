"""`SelfDistillationModel` in `model.fit` on JAX: method state under `jit`,
masks, saving, resume, metrics (the JAX half of tests/distill/test_training.py)."""

import keras
import numpy as np
import pytest

from epsd_tf import pruning
from epsd_tf.distill.model import SelfDistillationModel
from tests import students
from tests.jax import helpers

METHODS = ("none", "dlb", "cskd", "pskd")


def _model(kind, student=None, num_examples=16, epochs=2, batch_size=4, lr=0.1):
    model = SelfDistillationModel(student or helpers.conv_student(), kind,
                                  batch_size=batch_size, num_examples=num_examples,
                                  epochs=epochs)
    model.compile(optimizer=keras.optimizers.SGD(lr, momentum=0.9))
    return model


def test_dlb_carry_across_steps_and_epochs_matches_step_by_step_training():
    # fit (jitted, state purged and re-synced at epoch ends) = the same 8 steps
    # one by one; the carry crosses the epoch boundary.
    batches = helpers.MethodBatches("dlb")
    fitted, stepped = _model("dlb"), _model("dlb")
    history = fitted.fit(batches, epochs=2, verbose=0)
    losses = []
    for _ in range(2):
        for index in range(len(batches)):
            losses.append(stepped.train_on_batch(*batches[index], return_dict=True))
    def state(model):  # everything but the epoch counter (fit sets it, steps do not)
        return model.student.weights + list(model.method_step.carry_variables.values())

    for a, b in zip(state(fitted), state(stepped)):
        np.testing.assert_allclose(np.asarray(a.numpy(), "float64"),
                                   np.asarray(b.numpy(), "float64"), rtol=1e-5, atol=1e-6)
    assert losses[0]["sd_loss"] == 0.0  # step 0: no previous batch
    assert losses[4]["sd_loss"] > 0.0  # first step of epoch 2 distils from epoch 1
    assert history.history["sd_loss"][1] > 0.0
    carry = fitted.method_step.carry_variables
    last_x, last_y = batches[len(batches) - 1]
    np.testing.assert_array_equal(carry["images"].numpy(), last_x["image_view1"])
    np.testing.assert_array_equal(carry["labels"].numpy(), last_y)
    assert float(carry["has_previous"].numpy()) == 1.0


def test_dlb_carried_logits_are_the_last_batch_view0_logits_before_its_update():
    batches = helpers.MethodBatches("dlb")
    model = _model("dlb")
    for index in range(len(batches) - 1):
        model.train_on_batch(*batches[index])
    x, y = batches[len(batches) - 1]
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    expected, _ = model.student.stateless_call(
        trainable[:len(model.student.trainable_variables)],
        non_trainable[:len(model.student.non_trainable_variables)], x["image"],
        training=True)
    model.train_on_batch(x, y)
    np.testing.assert_allclose(model.method_step.carry_variables["logits"].numpy(),
                               np.asarray(expected), rtol=1e-5, atol=1e-6)


def test_pskd_table_rows_of_the_epoch_examples_are_updated():
    batches = helpers.MethodBatches("pskd", num_examples=12)
    model = _model("pskd", num_examples=16, epochs=2)
    model.fit(batches, epochs=1, verbose=0)
    table = model.method_step.predictions.numpy().astype("float32")
    np.testing.assert_allclose(table[:12].sum(axis=1), 1.0, atol=2e-3)
    assert np.all(table[12:] == 0)  # never in a batch
    # Epoch 2 reads epoch 1's rows: its soft-target term is on.
    history = model.fit(batches, epochs=2, initial_epoch=1, verbose=0)
    assert history.history["sd_loss"][-1] > 0


@pytest.mark.parametrize("kind", ["dlb", "pskd"])
def test_masked_weights_stay_exactly_zero_after_fit_and_reload(kind, tmp_path):
    student = pruning.wrap(helpers.conv_student())
    rng = np.random.default_rng(0)
    masks = {name: (rng.random(mask.shape) < 0.5).astype("float32")
             for name, mask in pruning.get_masks(student).items()}
    pruning.set_masks(student, masks)
    model = _model(kind, student)
    model.fit(helpers.MethodBatches(kind), epochs=2, verbose=0)
    path = str(tmp_path / "student.keras")
    student.save(path)
    loaded = keras.models.load_model(path)
    images = helpers.arrays(8)[0]
    np.testing.assert_allclose(loaded.predict(images, verbose=0),
                               student.predict(images, verbose=0), rtol=1e-5, atol=1e-6)
    for network in (student, loaded):
        weights = pruning.get_prunable_weights(network)
        for name, mask in masks.items():
            kernel = weights[name].numpy()
            assert np.all(kernel[mask == 0] == 0.0), name
            assert np.any(kernel[mask == 1] != 0.0), name


@pytest.mark.parametrize("kind", METHODS)
def test_every_method_logs_its_metrics_and_evaluates(kind):
    model = _model(kind, lr=0.05)
    images, _, labels = helpers.arrays(16)
    history = model.fit(helpers.MethodBatches(kind), epochs=2, verbose=0,
                        validation_data=(images, labels))
    assert {"loss", "ce_loss", "sd_loss", "accuracy", "val_loss", "val_nll",
            "val_ece"} <= set(history.history)
    logs = history.history
    np.testing.assert_allclose(np.add(logs["ce_loss"], logs["sd_loss"]), logs["loss"],
                               rtol=1e-5)
    assert np.all(np.isfinite(logs["loss"]))
    result = model.evaluate(images, labels, return_dict=True, verbose=0)
    assert result["loss"] == pytest.approx(result["nll"])


@pytest.mark.parametrize("kind", ["dlb", "pskd"])
def test_backup_and_restore_resumes_with_method_state(kind, tmp_path):
    backup = str(tmp_path / "backup")
    batches = helpers.MethodBatches(kind)  # 4 batches per epoch
    first = _model(kind, epochs=3)
    recorder = students.StateRecorder(crash_at=(1, 2))
    with pytest.raises(students.Crash):
        first.fit(batches, epochs=3, verbose=0, callbacks=[
            keras.callbacks.BackupAndRestore(backup, save_freq=1), recorder])
    saved = recorder.after_batch  # state after epoch 1, batch 1: the last backup
    second = _model(kind, helpers.conv_student(seed=7), epochs=3)
    resumed = students.StateRecorder()
    second.fit(batches, epochs=3, verbose=0, callbacks=[
        keras.callbacks.BackupAndRestore(backup, save_freq=1), resumed])
    assert len(resumed.at_start) == len(saved) >= 2
    for restored, expected in zip(resumed.at_start, saved):
        np.testing.assert_array_equal(restored, expected)
    assert resumed.epochs == [1, 2]
    assert any(np.any(v != 0) for v in saved if v.ndim >= 1)


def test_mixed_float16_trains_with_loss_scaling():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _model("dlb", lr=0.05)
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        history = model.fit(helpers.MethodBatches("dlb"), epochs=2, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.all(np.isfinite(history.history["loss"]))
    assert history.history["sd_loss"][-1] > 0
