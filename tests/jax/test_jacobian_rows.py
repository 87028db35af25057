"""The full Jacobian of the JAX seam pulls back a bounded number of rows at once
(`autodiff_jax.JACOBIAN_ROWS`) and still equals `jax.jacrev`'s."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from epsd_tf.pruning import autodiff_jax


def _coupled(weights):
    def fn(x):  # [B, 3, 2] -> [B, K]; the batch mean couples the examples, as BatchNorm does
        h = jnp.tanh(x.reshape(x.shape[0], -1) @ weights)
        return h - h.mean(axis=0, keepdims=True) ** 2
    return fn


@pytest.mark.parametrize("rows", [1, 7, 32, 1000])
def test_full_jacobian_in_row_blocks_equals_jacrev(monkeypatch, rows):
    monkeypatch.setattr(autodiff_jax, "JACOBIAN_ROWS", rows)
    key_x, key_w = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(key_x, (6, 3, 2))
    fn = _coupled(jax.random.normal(key_w, (6, 10)))  # B·K = 60 rows
    full = autodiff_jax.jacobian(fn, x, per_example=False)
    assert full.shape == (6, 10, 6, 3, 2)
    np.testing.assert_allclose(np.asarray(full), np.asarray(jax.jacrev(fn)(x)),
                               rtol=1e-5, atol=1e-6)
    assert np.abs(np.asarray(full)[0, :, 1]).max() > 1e-3  # the cross-example blocks are real
