"""`TorchSGD`: SGD with PyTorch semantics, as the SD papers' recipes train.

Weight decay. The DLB, CS-KD and PS-KD papers train with PyTorch's
`torch.optim.SGD(..., weight_decay=wd)`, which is *coupled* L2: the gradient
becomes `g + wd · w` and then goes through momentum. Keras 3's optimizer
`weight_decay` argument is *decoupled* (`w -= lr · wd · w`, outside momentum),
which is a different regulariser for SGD with momentum. To reproduce the
recipes we implement the coupled form in `TorchSGD.update_step` and never set
the Keras `weight_decay` argument. `TorchSGD` also keeps PyTorch's momentum
convention (`buf = μ·buf + g; w -= lr·buf`, Nesterov: `w -= lr·(g + μ·buf)`),
so a learning-rate drop takes effect at once instead of being smeared by a
momentum buffer that already holds the old learning rate (Keras' SGD stores
`lr·g` in its buffer). Pruned weights stay exactly 0 under this update: their
gradient and value are 0, so `g + wd·w`, the buffer and the step are 0 too.

Saved models name the class by its registered name `epsd_tf>TorchSGD`
(package "epsd_tf"), not by its module, so `.keras` files written before the
optimizers moved here from `epsd_tf.train.optimizers` still load.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="epsd_tf")
class TorchSGD(keras.optimizers.Optimizer):
    """SGD with PyTorch semantics: coupled L2 weight decay and PyTorch momentum.

    Per variable `w` with gradient `g` (dampening 0, as in the recipes):
        d = g + weight_decay · w
        buf = momentum · buf + d
        step = d + momentum · buf   if nesterov else   buf
        w = w - lr · step

    Args:
        learning_rate: float or `LearningRateSchedule`.
        momentum: in [0, 1).
        nesterov: Nesterov momentum (needs momentum > 0).
        weight_decay: coupled L2 coefficient (>= 0), applied to every trainable
            variable, biases and BatchNorm included, as PyTorch's `weight_decay`.
        name, **kwargs: passed to `keras.optimizers.Optimizer` (its own
            decoupled `weight_decay` is not accepted here).
    """

    def __init__(self, learning_rate=0.1, momentum: float = 0.9, nesterov: bool = False,
                 weight_decay: float = 0.0, name: str = "torch_sgd", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        momentum = float(momentum)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        if nesterov and momentum == 0.0:
            raise ValueError("nesterov=True needs momentum > 0, got momentum=0")
        weight_decay = float(weight_decay)
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
        self.momentum = momentum
        self.nesterov = bool(nesterov)
        self.l2_weight_decay = weight_decay

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = []
        if self.momentum != 0:
            self.momentums = self.add_optimizer_variables(variables, "momentum")

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        direction = ops.cast(gradient, variable.dtype)
        if self.l2_weight_decay:
            direction = direction + ops.cast(self.l2_weight_decay, variable.dtype) * variable
        if self.momentum != 0:
            buffer = self.momentums[self._get_variable_index(variable)]
            momentum = ops.cast(self.momentum, variable.dtype)
            self.assign(buffer, momentum * buffer + direction)
            direction = direction + momentum * buffer if self.nesterov else buffer
        self.assign_sub(variable, learning_rate * direction)

    def get_config(self) -> dict:
        config = super().get_config()
        config.pop("weight_decay", None)  # Keras' decoupled decay, always None here.
        config.update({"momentum": self.momentum, "nesterov": self.nesterov,
                       "weight_decay": self.l2_weight_decay})
        return config
