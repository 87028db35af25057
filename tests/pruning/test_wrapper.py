"""Masks: wrap/strip/get/set, exact zeros through fit, save/load and strip.

Backend-neutral: runs in the TF suite and in the TF-free JAX suite, where stock
`keras.Model.fit` jits a stateless step that purges the variables' own values
(issue 11: a pruned model's plain `fit` must train there too).
"""

import keras
import numpy as np
import pytest

from epsd_tf import optim, pruning
from tests.pruning.helpers import images, labels

pytestmark = pytest.mark.jax


def random_masks(model, density=0.5, seed=0):
    rng = np.random.default_rng(seed)
    return {name: (rng.random(v.shape) < density).astype("float32")
            for name, v in pruning.get_prunable_weights(model).items()}


def masked_values(model, masks):
    weights = pruning.get_prunable_weights(model)
    return np.concatenate([weights[k].numpy()[masks[k] == 0].ravel() for k in masks])


def test_wrap_is_identity_until_masked_and_names_are_stable(model):
    wrapped = pruning.wrap(model)
    assert pruning.has_masks(wrapped) and not pruning.has_masks(model)
    assert list(pruning.get_prunable_weights(wrapped)) == [
        "conv1/kernel", "conv2/kernel", "sep/pointwise_kernel", "fc/kernel"]
    x = images()
    np.testing.assert_allclose(wrapped(x), model(x), atol=1e-6)
    assert all(np.all(m == 1) for m in pruning.get_masks(wrapped).values())


def test_forward_uses_masked_kernel_even_if_stored_kernel_is_dense(model):
    wrapped = pruning.wrap(model)
    masks = random_masks(wrapped)
    pruning.set_masks(wrapped, masks)
    assert np.all(masked_values(wrapped, masks) == 0)
    # Write dense weights back behind the wrapper's back: the output must not change.
    x = images()
    before = wrapped(x)
    for layer in wrapped.layers:
        if isinstance(layer, pruning.PruneLowMagnitude):
            source = model.get_layer(layer.layer.name)
            layer.layer.set_weights(source.get_weights())
    assert np.any(masked_values(wrapped, masks) != 0)
    np.testing.assert_allclose(wrapped(x), before, atol=1e-6)


def compile_ce(model, optimizer):
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))


@pytest.mark.parametrize("optimizer", [
    lambda: keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=5e-4),
    lambda: keras.optimizers.Adam(0.01),
    lambda: keras.optimizers.AdamW(0.01, weight_decay=0.05),
    lambda: keras.optimizers.RMSprop(0.01, momentum=0.9),
    lambda: optim.TorchSGD(learning_rate=0.1, momentum=0.9, weight_decay=5e-4),
], ids=["sgd_momentum_wd", "adam", "adamw", "rmsprop", "torch_sgd"])
def test_masked_weights_stay_zero_through_stock_fit(tiny, optimizer):
    # Plain `keras.Model.fit` (no SelfDistillationModel): on JAX its jitted step
    # runs the optimizer in a scope without the masks; the forward-pass mask
    # alone must keep the pruned weights exactly 0 after every step.
    wrapped = pruning.wrap(tiny)
    masks = random_masks(wrapped)
    pruning.set_masks(wrapped, masks)
    kept_before = {k: v.numpy().copy() for k, v in pruning.get_prunable_weights(wrapped).items()}
    compile_ce(wrapped, optimizer())

    class PrunedStayZero(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.nonzero = []

        def on_train_batch_end(self, batch, logs=None):
            # On JAX, reading a variable in a batch callback syncs the state.
            self.nonzero.append(int(np.count_nonzero(masked_values(self.model, masks))))

    check = PrunedStayZero()
    history = wrapped.fit(images(16), labels(16), batch_size=4, epochs=2, verbose=0,
                          callbacks=[check])
    assert check.nonzero == [0] * 8
    assert np.all(masked_values(wrapped, masks) == 0)
    assert np.all(np.isfinite(history.history["loss"]))
    # ... while the kept weights did train.
    after = pruning.get_prunable_weights(wrapped)
    assert any(np.any(after[k].numpy()[masks[k] == 1] != kept_before[k][masks[k] == 1])
               for k in masks)


def test_pruned_weights_get_exactly_zero_gradient_so_training_ignores_them(model):
    # The one enforcement mechanism: the forward uses kernel * mask, so a value
    # written behind the mask neither changes the output (see above) nor moves
    # in training (gradient exactly 0), and strip_masks / set_masks zero it.
    wrapped = pruning.wrap(model)
    masks = random_masks(wrapped)
    pruning.set_masks(wrapped, masks)
    kernel = pruning.get_prunable_weights(wrapped)["conv1/kernel"]
    kernel.assign(np.full(kernel.shape, 0.25, "float32"))
    compile_ce(wrapped, keras.optimizers.SGD(0.5, momentum=0.9))
    wrapped.fit(images(8), labels(8), batch_size=4, epochs=2, verbose=0)
    pruned = masks["conv1/kernel"] == 0
    assert np.all(kernel.numpy()[pruned] == 0.25)
    assert np.any(kernel.numpy()[~pruned] != 0.25)
    stripped = pruning.strip_masks(wrapped)
    assert np.all(masked_values(stripped, masks) == 0)
    x = images()
    np.testing.assert_allclose(stripped(x), wrapped(x), atol=1e-5)
    pruning.set_masks(wrapped, masks)
    assert np.all(masked_values(wrapped, masks) == 0)


def test_save_load_and_strip_keep_exact_zeros(model, tmp_path):
    wrapped = pruning.prune_low_magnitude(model, masks=random_masks(model))
    masks = pruning.get_masks(wrapped)
    path = str(tmp_path / "pruned.keras")
    wrapped.save(path)
    loaded = keras.models.load_model(path)
    assert pruning.has_masks(loaded)
    for name, mask in pruning.get_masks(loaded).items():
        np.testing.assert_array_equal(mask, masks[name])
    assert np.all(masked_values(loaded, masks) == 0)
    x = images()
    np.testing.assert_allclose(loaded(x), wrapped(x), atol=1e-6)
    # The reloaded wrapper still enforces its masks in training.
    compile_ce(loaded, "adam")
    loaded.fit(images(8), labels(8), epochs=1, verbose=0)
    assert np.all(masked_values(loaded, masks) == 0)
    stripped = pruning.strip_pruning(loaded)
    assert not pruning.has_masks(stripped)
    assert np.all(masked_values(stripped, masks) == 0)
    np.testing.assert_allclose(stripped(x), loaded(x), atol=1e-6)


def test_sequential_nested_models_and_keep_dense():
    keras.utils.set_random_seed(0)
    inner = keras.Sequential([keras.Input((8, 8, 4)),
                              keras.layers.Conv2D(4, 3, padding="same", name="conv"),
                              keras.layers.BatchNormalization()], name="block")
    outer = keras.Sequential([keras.Input((8, 8, 3)),
                              keras.layers.Conv2D(4, 3, padding="same", name="stem"),
                              inner, keras.layers.Flatten(),
                              keras.layers.Dense(3, name="head")], name="net")
    wrapped = pruning.wrap(outer, keep_dense=["head"])
    assert list(pruning.get_masks(wrapped)) == ["stem/kernel", "block/conv/kernel"]
    assert list(pruning.get_prunable_weights(wrapped)) == [
        "stem/kernel", "block/conv/kernel", "head/kernel"]
    masks = random_masks(outer)
    del masks["head/kernel"]
    pruning.set_masks(wrapped, masks)
    x = images(shape=(8, 8, 3))
    stripped = pruning.strip_masks(wrapped)
    np.testing.assert_allclose(stripped(x), wrapped(x), atol=1e-6)
    assert np.all(masked_values(stripped, masks) == 0)


@keras.saving.register_keras_serializable(package="epsd_tf_tests")
class ScaledDense(keras.layers.Layer):
    """A custom layer declaring its prunable weight, TF-MOT style."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(name="w", shape=(input_shape[-1], self.units))
        self.scale = self.add_weight(name="scale", shape=(self.units,), initializer="ones")

    def call(self, x):
        return keras.ops.matmul(x, self.w) * self.scale

    def get_prunable_weights(self):
        return [self.w]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_custom_layer_with_get_prunable_weights(tmp_path):
    keras.utils.set_random_seed(0)
    x = keras.Input((6,))
    model = keras.Model(x, ScaledDense(4, name="custom")(x))
    wrapped = pruning.wrap(model)
    masks = random_masks(wrapped)
    assert list(masks) == ["custom/w"]
    pruning.set_masks(wrapped, masks)
    inputs = np.random.default_rng(0).normal(size=(3, 6)).astype("float32")
    expected = inputs @ (model.layers[1].w.numpy() * masks["custom/w"])
    np.testing.assert_allclose(wrapped(inputs), expected, atol=1e-5)
    wrapped.save(str(tmp_path / "custom.keras"))
    loaded = keras.models.load_model(str(tmp_path / "custom.keras"))
    np.testing.assert_allclose(loaded(inputs), expected, atol=1e-5)


def test_stateless_call_sees_masks(model):
    wrapped = pruning.prune_low_magnitude(model, masks=random_masks(model))
    x = images()
    trainable = [v.value for v in wrapped.trainable_variables]
    non_trainable = [v.value for v in wrapped.non_trainable_variables]
    outputs, _ = wrapped.stateless_call(trainable, non_trainable, x, training=False)
    np.testing.assert_allclose(outputs, wrapped(x), atol=1e-6)


def test_bad_inputs(model):
    with pytest.raises(ValueError, match="keep_dense names \\['nope'\\] match no prunable"):
        pruning.wrap(model, keep_dense=["nope"])
    with pytest.raises(ValueError, match="already has masks"):
        pruning.wrap(pruning.wrap(model))
    x = keras.Input((4,))
    with pytest.raises(ValueError, match="no prunable weights"):
        pruning.wrap(keras.Model(x, keras.layers.ReLU()(x)))
    with pytest.raises(ValueError, match="not built"):
        pruning.wrap(keras.Sequential([keras.layers.Dense(2)]))
    wrapped = pruning.wrap(model)
    with pytest.raises(ValueError, match="only 0 and 1"):
        pruning.set_masks(wrapped, {"fc/kernel": np.full((16, 5), 0.5)})
    with pytest.raises(ValueError, match="have no mask"):
        pruning.set_masks(wrapped, {"bn1/gamma": np.ones(8)})
