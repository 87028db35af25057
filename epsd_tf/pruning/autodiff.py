"""The autodiff seam of the scorers: gradients, compilation and precision.

Scorers write their math in `keras.ops` on lists of parameter tensors and use
only `value_and_grad`, `function`, `jacobian`, `pair` and `precision` from here
(Mean-JSV and the loss landscapes use it too). This file picks
the backend's version once, at import (Keras fixes the backend per process):

* TensorFlow (`autodiff_tf.py`): `tf.GradientTape`, `tf.function`.
* JAX (`autodiff_jax.py`): `jax.value_and_grad`, `jax.jit`, x64 scoped to scoring.

`value_and_grad` nests on both: a differentiated function called inside
another differentiated function contributes its inner gradient computation to
the outer derivative, which is how the ProsPr/EPSD meta-gradient gets its
second-order terms (Alizadeh et al., ICLR 2022).
"""

from __future__ import annotations

import keras

BACKENDS = ("jax", "tensorflow")

if keras.backend.backend() == "jax":
    from epsd_tf.pruning.autodiff_jax import function, jacobian, pair, precision, value_and_grad
elif keras.backend.backend() == "tensorflow":
    from epsd_tf.pruning.autodiff_tf import function, jacobian, pair, precision, value_and_grad
else:
    def _unsupported(*args, **kwargs):
        raise ValueError(f"epsd_tf scoring runs on the Keras backends {list(BACKENDS)}; "
                         f"KERAS_BACKEND is {keras.backend.backend()!r}")
    function = jacobian = pair = precision = value_and_grad = _unsupported

__all__ = ["BACKENDS", "function", "jacobian", "pair", "precision", "value_and_grad"]
