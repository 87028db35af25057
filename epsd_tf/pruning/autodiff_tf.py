"""TensorFlow half of the autodiff seam (see `autodiff.py`)."""

from __future__ import annotations

import contextlib
from typing import Callable

import tensorflow as tf


def pair(fn: Callable) -> Callable:
    """`pair(a, b) -> (fn(a), fn(b))`: two calls (the JAX seam batches them)."""
    return lambda a, b: (fn(a), fn(b))


def value_and_grad(fn: Callable, has_aux: bool = False) -> Callable:
    """Returns `g(params, *args) -> (value, grads)` for `fn(params, *args)`.

    Args:
        fn: maps a list of parameter tensors (and extra arguments, not
            differentiated) to a scalar, or to `(scalar, aux)` if `has_aux`.
        has_aux: whether `fn` also returns auxiliary outputs.

    Returns:
        A function returning `(value, grads)` (or `((value, aux), grads)`), with
        `grads` a list like `params`; zeros where `value` does not depend on a
        parameter. Nested calls record the inner gradient on the outer tape.
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


def precision(dtype: str):
    """A context for scoring in `dtype`; TensorFlow has float64 always on."""
    return contextlib.nullcontext()


def jacobian(fn: Callable, x, per_example: bool):
    """Jacobian of `fn(x) -> [B, K]` w.r.t. `x` `[B, ...]`.

    Returns `[B, K, ...]` (`batch_jacobian`, for examples that do not interact)
    if `per_example`, else the full `[B, K, B, ...]`.
    """
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    return tape.batch_jacobian(y, x) if per_example else tape.jacobian(y, x)
