"""Tests for epsd_tf.optim: PyTorch-faithful SGD, schedules and recipes."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from epsd_tf import optim


def _torch_sgd_reference(w, grads, lrs, momentum, nesterov, weight_decay):
    """PyTorch's SGD update (dampening 0) written out in numpy."""
    w = w.copy()
    buf = None
    for g, lr in zip(grads, lrs):
        d = g + weight_decay * w
        buf = d.copy() if buf is None else momentum * buf + d
        step = d + momentum * buf if nesterov else buf
        w = w - lr * step
    return w


@pytest.mark.parametrize("nesterov", [False, True])
def test_torch_sgd_matches_pytorch_update_with_coupled_l2(nesterov):
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(3, 4)).astype("float32")
    grads = [rng.normal(size=(3, 4)).astype("float32") for _ in range(5)]
    lrs = [0.1, 0.1, 0.1, 0.01, 0.01]  # a multistep drop after 3 steps
    schedule = optim.make_schedule(0.1, schedule="multistep", milestones=(3,),
                                        steps_per_epoch=1, epochs=5)
    opt = optim.TorchSGD(schedule, momentum=0.9, nesterov=nesterov, weight_decay=5e-4)
    var = keras.Variable(w0)
    for g in grads:
        opt.apply([g], [var])
    expected = _torch_sgd_reference(w0, grads, lrs, 0.9, nesterov, 5e-4)
    np.testing.assert_allclose(var.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_coupled_decay_differs_from_keras_decoupled_decay():
    w0 = np.ones((2,), "float32")
    ours = keras.Variable(w0)
    theirs = keras.Variable(w0)
    opt_ours = optim.TorchSGD(0.1, momentum=0.9, weight_decay=0.1)
    opt_theirs = keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=0.1)
    for _ in range(3):
        opt_ours.apply([np.zeros(2, "float32")], [ours])
        opt_theirs.apply([np.zeros(2, "float32")], [theirs])
    # Coupled decay goes through momentum, so it shrinks weights faster.
    assert ours.numpy()[0] < theirs.numpy()[0] - 1e-3


def test_zero_weights_with_zero_gradient_stay_exactly_zero():
    w0 = np.array([0.0, 1.0, 0.0, -2.0], "float32")
    var = keras.Variable(w0)
    opt = optim.make_optimizer(learning_rate=0.1, momentum=0.9, nesterov=True,
                                    weight_decay=5e-4, epochs=3)
    rng = np.random.default_rng(1)
    for _ in range(4):
        g = rng.normal(size=4).astype("float32") * (w0 != 0)
        opt.apply([g], [var])
    assert var.numpy()[0] == 0.0 and var.numpy()[2] == 0.0
    assert var.numpy()[1] != 1.0


def test_multistep_cosine_constant_and_warmup_values():
    multistep = optim.make_schedule(1.0, schedule="multistep", milestones=(2, 4),
                                         gamma=0.1, steps_per_epoch=10, epochs=6)
    np.testing.assert_allclose(
        [float(multistep(s)) for s in (0, 19, 20, 39, 40, 59)],
        [1.0, 1.0, 0.1, 0.1, 0.01, 0.01], rtol=1e-6)
    cosine = optim.make_schedule(1.0, schedule="cosine", steps_per_epoch=10, epochs=4)
    np.testing.assert_allclose([float(cosine(s)) for s in (0, 20, 40)], [1.0, 0.5, 0.0],
                               atol=1e-6)
    warm = optim.make_schedule(1.0, schedule="constant", steps_per_epoch=2, epochs=4,
                                    warmup_epochs=1)
    np.testing.assert_allclose([float(warm(s)) for s in (0, 1, 2, 7)], [0.5, 1.0, 1.0, 1.0])


def test_recipes_have_method_md_numbers():
    assert optim.RECIPES["dlb"]["milestones"] == (150, 180, 210)
    assert optim.RECIPES["dlb"]["learning_rate"] == 0.05
    assert optim.RECIPES["cskd"]["weight_decay"] == 1e-4
    assert optim.RECIPES["pskd"]["epochs"] == 300


def test_recipe_milestones_scale_to_the_run_length():
    assert optim.recipe("dlb", epochs=24)["milestones"] == (15, 18, 21)
    assert optim.recipe("pskd", epochs=30)["milestones"] == (15, 22)
    assert optim.recipe("dlb")["milestones"] == (150, 180, 210)


def test_recipe_optimizer_has_the_recipe_settings():
    opt = optim.make_recipe_optimizer("cskd", steps_per_epoch=10, epochs=20)
    assert isinstance(opt, optim.TorchSGD)
    assert opt.nesterov is False and opt.l2_weight_decay == 1e-4
    np.testing.assert_allclose(float(opt.learning_rate), 0.1)  # at step 0
    assert opt._learning_rate.boundaries == (100, 150)


def test_optimizer_and_schedule_serialise_round_trip():
    opt = optim.make_recipe_optimizer("dlb", steps_per_epoch=5, epochs=24)
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert isinstance(clone, optim.TorchSGD)
    assert clone.get_config() == opt.get_config()


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "adam"}, "Unknown optimizer 'adam'"),
    ({"schedule": "step"}, "Unknown schedule 'step'"),
    ({"milestones": (5, 3)}, "milestones must be increasing"),
    ({"momentum": 1.5}, "momentum must be in"),
    ({"weight_decay": -1.0}, "weight_decay must be >= 0"),
    ({"momentum": 0.0, "nesterov": True}, "nesterov=True needs momentum"),
    ({"warmup_epochs": 10, "epochs": 10}, "warmup_epochs must be in"),
])
def test_bad_settings_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        optim.make_optimizer(**kwargs)


def test_unknown_recipe_raises():
    with pytest.raises(ValueError, match="Unknown recipe 'sam'"):
        optim.recipe("sam")


def test_unknown_recipe_override_raises():
    with pytest.raises(ValueError, match="Unknown optimizer settings"):
        optim.make_recipe_optimizer("dlb", steps_per_epoch=1, lr=0.1)


def test_registered_names_are_stable_so_old_saved_files_load():
    # `.keras` files store `registered_name` and the defining module; files
    # written before the move name the module `epsd_tf.train.optimizers`.
    assert keras.saving.get_registered_name(optim.TorchSGD) == "epsd_tf>TorchSGD"
    assert keras.saving.get_registered_name(optim.EpochSchedule) == "epsd_tf>EpochSchedule"
    config = keras.optimizers.serialize(
        optim.make_recipe_optimizer("dlb", steps_per_epoch=5, epochs=24))
    config["module"] = config["config"]["learning_rate"]["module"] = "epsd_tf.train.optimizers"
    clone = keras.optimizers.deserialize(config)
    assert isinstance(clone, optim.TorchSGD)
    assert isinstance(clone._learning_rate, optim.EpochSchedule)
    assert clone._learning_rate.boundaries == (75, 90, 105)


def test_recipe_overrides_apply_after_scaling():
    opt = optim.make_recipe_optimizer("pskd", steps_per_epoch=2, epochs=30,
                                      learning_rate=0.2, schedule="cosine")
    assert opt._learning_rate.schedule == "cosine"
    np.testing.assert_allclose(float(opt._learning_rate(0)), 0.2)
    assert opt.nesterov is True and opt.l2_weight_decay == 5e-4
