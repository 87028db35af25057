"""The TensorFlow seam of the scorers: gradients and graph compilation.

Scorers write their math in `keras.ops` on lists of parameter tensors and use
only `value_and_grad` and `function` from here, so that a JAX backend needs a
second version of this file and nothing else (`jax.value_and_grad`, `jax.jit`).

`value_and_grad` nests: calling a differentiated function inside another
differentiated function records the inner gradient computation on the outer
`tf.GradientTape`, which is how the ProsPr/EPSD meta-gradient gets its
second-order terms (Alizadeh et al., ICLR 2022).
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf


def value_and_grad(fn: Callable, has_aux: bool = False) -> Callable:
    """Returns `g(params, *args) -> (value, grads)` for `fn(params, *args)`.

    Args:
        fn: maps a list of parameter tensors (and extra arguments, not
            differentiated) to a scalar, or to `(scalar, aux)` if `has_aux`.
        has_aux: whether `fn` also returns auxiliary outputs.

    Returns:
        A function returning `(value, grads)` (or `((value, aux), grads)`), with
        `grads` a list like `params`; zeros where `value` does not depend on a
        parameter.
    """
    def wrapped(params, *args, **kwargs):
        params = list(params)
        with tf.GradientTape() as tape:
            tape.watch(params)
            out = fn(params, *args, **kwargs)
            value = out[0] if has_aux else out
        grads = tape.gradient(value, params,
                              unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return out, grads
    return wrapped


def function(fn: Callable, jit_compile: bool = False) -> Callable:
    """Compiles `fn` into a graph (`tf.function`), optionally with XLA."""
    return tf.function(fn, jit_compile=jit_compile, reduce_retracing=True)
