"""Tests for epsd_tf.train.config: gin parsing, locking, and the recipe gin files."""

import os

import gin
import pytest

from epsd_tf import optim
from epsd_tf.train import config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOKE = os.path.join(REPO, "gin", "smoke.gin")


def test_parsed_config_is_locked_until_the_next_parse():
    config.parse([SMOKE])
    with pytest.raises(RuntimeError, match="locked"):
        gin.bind_parameter("run.epochs", 3)
    # A new parse starts from a clean, unlocked config.
    text = config.parse([SMOKE], ["run.epochs = 3"])
    assert "run.epochs = 3" in text


@pytest.mark.parametrize("gin_file, recipe", [
    ("cifar10_resnet20_epsd_dlb.gin", "dlb"),
    ("cifar100_resnet18_epsd_dlb.gin", "dlb"),
    ("cifar100_resnet18_epsd_pskd.gin", "pskd"),
    ("cifar100_vgg19_epsd_cskd.gin", "cskd"),
])
def test_paper_configs_take_the_optimizer_from_the_recipe_table(gin_file, recipe):
    text = config.parse([gin_file])
    assert "run.make_optimizer = @make_recipe_optimizer" in text
    assert gin.query_parameter("make_recipe_optimizer.name") == recipe
    assert gin.query_parameter("run.epochs") == optim.RECIPES[recipe]["epochs"]
    # No recipe number is repeated in the gin file.
    assert "make_optimizer." not in open(os.path.join(REPO, "gin", gin_file)).read()


def test_jit_compile_auto_is_xla_on_jax_only_and_bad_values_are_refused():
    import keras

    from epsd_tf.train import experiment
    assert experiment._jit_compile("auto") is (keras.backend.backend() == "jax")
    assert experiment._jit_compile(True) is True
    assert experiment._jit_compile(False) is False
    with pytest.raises(ValueError, match="'auto'"):
        experiment._jit_compile("yes")
