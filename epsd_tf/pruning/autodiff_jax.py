"""JAX half of the autodiff seam (see `autodiff.py`).

`jax.value_and_grad` over lists of arrays (pytrees) and `jax.jit`. Nesting is
plain function composition: the outer `jax.value_and_grad` of a function that
calls an inner one differentiates through the inner gradient (exact second
order, no tape). Every compiled function is XLA-compiled (`jit_compile` is
accepted for the TensorFlow signature).
"""

from __future__ import annotations

import contextlib
from typing import Callable

import jax
import keras

JACOBIAN_ROWS = 32  # output rows pulled back at once by the full `jacobian`


def value_and_grad(fn: Callable, has_aux: bool = False) -> Callable:
    """Returns `g(params, *args) -> (value, grads)` for `fn(params, *args)`.

    Same contract as the TensorFlow version: `params` a list of tensors, the
    other arguments not differentiated, `grads` a list like `params` (zeros
    where `value` does not depend on a parameter), `((value, aux), grads)`
    with `has_aux`.
    """
    grad_fn = jax.value_and_grad(fn, argnums=0, has_aux=has_aux)

    def wrapped(params, *args, **kwargs):
        out, grads = grad_fn(list(params), *args, **kwargs)
        return out, list(grads)
    return wrapped


def function(fn: Callable, jit_compile: bool = False) -> Callable:
    """`jax.jit(fn)`: traced once per input structure, always XLA."""
    del jit_compile  # JAX always compiles with XLA.
    return jax.jit(fn)


def pair(fn: Callable) -> Callable:
    """`pair(a, b) -> (fn(a), fn(b))` as one `jax.vmap`-ed call over `[a, b]`.

    For a pure `fn` (scoring's stateless forward: state updates dropped) this
    is exactly the two calls, each batch normalised with its own statistics,
    with one launch per operation instead of two. Batches of different shapes
    take two calls.
    """
    import jax.numpy as jnp

    def paired(a, b):
        if tuple(a.shape) != tuple(b.shape):
            return fn(a), fn(b)
        out = jax.vmap(fn)(jnp.stack([a, jnp.asarray(b, a.dtype)]))
        return out[0], out[1]
    return paired


def precision(dtype: str):
    """A context for scoring in `dtype`.

    JAX computes in float32 unless 64-bit types are enabled; `"float64"`
    enables them for the duration of the context only (`jax.enable_x64`), so
    the scoring copy's variables, the computation and the scores are float64
    and nothing outside scoring changes.

    x64 alone is not enough: Keras 3's dtype promotion on JAX maps every
    float64 result to float32 (`keras.backend.result_type("float64",
    "float32")` is `"float32"`), and `ops.mean`, `ops.var` and
    BatchNormalization compute in that promoted dtype. Under x64 they silently
    rounded the float64 scoring computation to float32 (the forward values
    and, in the backward pass, every cotangent through them), so "float64"
    scores carried float32 round-off, which the meta-gradient amplifies (EPSD's
    float64 scores of ResNet-20 moved by a median 50 % between 1 and 2 XLA CPU
    threads; truly float64, by 1e-12). The context therefore also makes Keras
    keep float64 while it is open (`_keras_keeps_float64`).
    """
    if dtype != "float64":
        return contextlib.nullcontext()
    return _float64()


@contextlib.contextmanager
def _float64():
    with jax.enable_x64(True), _keras_keeps_float64():
        yield


@contextlib.contextmanager
def _keras_keeps_float64():
    """Keras' float64 -> float32 promotion rule switched off inside the block.

    The rule is one entry of a private table of Keras (3.x,
    `keras.src.backend.common.dtypes.BIT64_TO_BIT32_DTYPE`), read on every
    `result_type` call; it is restored on exit. A Keras without that table
    raises before any scoring rather than scoring float64 in float32.
    """
    from keras.src.backend.common import dtypes as keras_dtypes

    table = getattr(keras_dtypes, "BIT64_TO_BIT32_DTYPE", None)
    if not isinstance(table, dict) or "float64" not in table:
        raise RuntimeError(
            f"score_dtype='float64' on JAX: Keras {keras.__version__} has no "
            "keras.src.backend.common.dtypes.BIT64_TO_BIT32_DTYPE, so its float64 "
            "promotion cannot be kept; score in float32 or on TensorFlow.")
    saved = table["float64"]
    table["float64"] = "float64"
    try:
        if keras.backend.result_type("float64", "float32") != "float64":
            raise RuntimeError(
                f"score_dtype='float64' on JAX: Keras {keras.__version__} still promotes "
                "float64 to float32; score in float32 or on TensorFlow.")
        yield
    finally:
        table["float64"] = saved


def jacobian(fn: Callable, x, per_example: bool):
    """Jacobian of `fn(x) -> [B, K]` w.r.t. `x` `[B, ...]`.

    Returns `[B, K, ...]` (the diagonal blocks, by `jax.vmap` of `jax.jacrev`
    over single examples) if `per_example`, else the full `[B, K, B, ...]`:
    one forward pass, then its pullback for `JACOBIAN_ROWS` output rows at a
    time (`jax.lax.map` with `batch_size`), so memory grows with that, not
    with `B·K` (`jax.jacrev` would pull back all `B·K` rows at once: tens of
    GiB for VGG-16 at `B` = 32 in training mode).
    """
    import jax.numpy as jnp

    x = jnp.asarray(x)
    if per_example:
        def single(example):
            return fn(example[None])[0]
        return jax.vmap(jax.jacrev(single))(x)
    y, pullback = jax.vjp(fn, x)
    basis = jnp.eye(y.size, dtype=y.dtype).reshape((y.size,) + y.shape)
    rows = jax.lax.map(lambda cotangent: pullback(cotangent)[0], basis,
                       batch_size=min(JACOBIAN_ROWS, y.size))
    return rows.reshape(y.shape + x.shape)
