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
    """
    if dtype == "float64":
        return jax.enable_x64(True)
    return contextlib.nullcontext()


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
