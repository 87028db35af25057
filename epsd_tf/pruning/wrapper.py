"""`PruneLowMagnitude`: the Keras 3 layer wrapper that holds pruning masks.

This is the one place masks are enforced (EPSD, Chen et al., AAAI 2024, step 2
trains the sparse network with its mask fixed and pruned weights exactly 0).
The names mirror TF-MOT's (`prune_low_magnitude`, `get_prunable_weights`,
`strip_pruning`) because TF-MOT itself cannot wrap Keras 3 layers.

How a mask is enforced (one mechanism, the same under TensorFlow, Keras' stock
JAX `fit` and `SelfDistillationModel`'s JAX step):

* Forward pass: the wrapped layer runs inside a `keras.StatelessScope` that maps
  each prunable kernel to `kernel * mask`. This works for any layer, built-in
  or custom, without knowing which attribute the layer reads its kernel from:
  the network computes with exactly the pruned kernel whatever is stored.
* Stored weights: `set_masks` (`apply_masks`) zeroes the pruned entries once,
  and the gradient reaching the kernel is `grad * mask`, exactly 0 where
  pruned, so every optimizer whose update of a weight with zero gradient and
  zero value is zero (SGD with momentum, Nesterov and weight decay, Adam,
  AdamW, RMSprop, ... and `optim.TorchSGD`) keeps them exactly 0 after every
  step. `strip_masks` writes `kernel * mask`, so exports are exact even after
  an optimizer that moves zero-gradient weights (Keras' Muon orthogonalises
  whole matrices) or a manual write behind the mask.
* Masks are non-trainable variables of the wrapper, so `.keras` saving,
  checkpoints and `BackupAndRestore` carry them.

Why no kernel constraint: Keras' JAX `optimizer.stateless_apply` applies
variable constraints in a scope that maps only the optimizer's and the
trainable values, and `fit` on JAX purges every variable's own value, so a
constraint reading the mask variable cannot run inside stock `fit` on JAX
(issue 11). A mask held outside the model's variables would be baked into the
compiled step and go stale on `set_masks`; the forward-pass mask needs neither.
"""

from __future__ import annotations

import keras
from keras import ops

# Built-in prunable layers -> names of their prunable variables (METHOD.md §3:
# every kernel of Conv*, DepthwiseConv*, Conv*Transpose and Dense; the pointwise
# kernel of SeparableConv*). Biases, BatchNorm and embeddings are not pruned.
_KERNEL_LAYERS = (
    keras.layers.Dense,
    keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
    keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D,
)
_POINTWISE_LAYERS = (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)


def is_prunable_layer(layer: keras.layers.Layer) -> bool:
    """True for layers with prunable weights (built-in kinds or `get_prunable_weights`)."""
    if isinstance(layer, PruneLowMagnitude):
        return True
    if callable(getattr(layer, "get_prunable_weights", None)):
        return True
    return isinstance(layer, _KERNEL_LAYERS + _POINTWISE_LAYERS)


def layer_prunable_weights(layer: keras.layers.Layer) -> list:
    """The prunable variables of one built layer, in a fixed order.

    Custom layers declare theirs with a `get_prunable_weights()` method returning
    a list of variables (TF-MOT's `PrunableLayer` convention).

    Raises:
        ValueError: if the layer is not built or its prunable variables do not
            have distinct names (the names key score and mask dicts).
    """
    if isinstance(layer, PruneLowMagnitude):
        layer = layer.layer
    if not layer.built:
        raise ValueError(f"Layer {layer.name!r} is not built; build the model first.")
    if callable(getattr(layer, "get_prunable_weights", None)):
        weights = list(layer.get_prunable_weights())
    elif isinstance(layer, _POINTWISE_LAYERS):
        weights = [v for v in layer.weights if v.name == "pointwise_kernel"]
    elif isinstance(layer, _KERNEL_LAYERS):
        weights = [v for v in layer.weights if v.name == "kernel"]
    else:
        weights = []
    names = [v.name for v in weights]
    if len(set(names)) != len(names):
        raise ValueError(
            f"Layer {layer.name!r} declares prunable weights with duplicate names "
            f"{names}; give each prunable variable a distinct name.")
    return weights


@keras.saving.register_keras_serializable(package="epsd_tf")
class PruneLowMagnitude(keras.layers.Wrapper):
    """Wraps a layer and multiplies each prunable kernel by a fixed 0/1 mask.

    Masks start at ones; set them with `epsd_tf.pruning.set_masks`. Create
    wrappers with `epsd_tf.pruning.wrap` / `prune_low_magnitude` (which clone
    the model), not on a layer that is already built into a model.

    Args:
        layer: the layer to wrap; a built-in prunable layer or a custom layer
            with `get_prunable_weights()`.
        **kwargs: standard layer arguments (`name`, ...).
    """

    def __init__(self, layer, **kwargs):
        if not is_prunable_layer(layer):
            raise ValueError(
                f"Layer {layer.name!r} of type {type(layer).__name__} has no prunable "
                "weights; prunable: Dense, Conv*, Conv*Transpose, DepthwiseConv*, "
                "SeparableConv*, or a layer defining get_prunable_weights().")
        kwargs.setdefault("name", f"prune_low_magnitude_{layer.name}")
        super().__init__(layer, **kwargs)
        self.masks = []

    def build(self, input_shape=None):
        super().build(input_shape)
        self.masks = []
        for weight in layer_prunable_weights(self.layer):
            mask = self.add_weight(
                name=f"{weight.name}_mask", shape=weight.shape, dtype=weight.dtype,
                initializer="ones", trainable=False)
            self.masks.append(mask)
        self.built = True

    def get_prunable_weights(self) -> list:
        """The wrapped layer's prunable variables (same order as `self.masks`)."""
        return layer_prunable_weights(self.layer)

    def apply_masks(self) -> None:
        """Zeroes the stored kernels where the mask is 0 (after `set_masks`)."""
        for weight, mask in zip(self.get_prunable_weights(), self.masks):
            weight.assign(weight * ops.cast(mask, weight.dtype))

    def call(self, inputs, *args, **kwargs):
        prunable = {id(w): m for w, m in zip(self.get_prunable_weights(), self.masks)}
        # Map every variable of the wrapped layer, not only the kernels: a nested
        # StatelessScope only sees its own mapping, so under `stateless_call` the
        # other variables must carry the outer scope's values through.
        mapping = []
        for variable in self.layer.variables:
            value = variable.value
            if id(variable) in prunable:
                value = value * ops.cast(prunable[id(variable)].value, value.dtype)
            mapping.append((variable, value))
        with keras.StatelessScope(state_mapping=mapping, collect_losses=True) as scope:
            originals = {id(v): scope.get_current_value(v) for v, _ in mapping}
            outputs = self.layer(inputs, *args, **kwargs)
        # Hand state updates (e.g. a custom layer's running statistics) and
        # activity losses to the enclosing context, stateless or not.
        for variable in self.layer.variables:
            if id(variable) in prunable:
                continue
            new_value = scope.get_current_value(variable)
            if new_value is not None and new_value is not originals[id(variable)]:
                variable.assign(new_value)
        for loss in scope.losses:
            self.add_loss(loss)
        return outputs

    def compute_output_shape(self, *args, **kwargs):
        return self.layer.compute_output_shape(*args, **kwargs)

    def compute_output_spec(self, *args, **kwargs):
        return self.layer.compute_output_spec(*args, **kwargs)
