"""JAX half of the distribution seam (see `distribution.py`).

One process and no `tf.distribute`-style strategy: the jitted train step sees
the global batch, so every helper is the single-replica case. Multi-device JAX
(`keras.distribution.DataParallel`, issue 15) shards that global batch inside
one program: the loss is already the global mean and these helpers stay valid;
only the replica-local DLB carry would need a sharded layout.
"""

from __future__ import annotations

import keras
from keras import ops


def num_replicas() -> int:
    """Replicas in sync: 1 (one global program on JAX)."""
    return 1


def scale_loss_for_distribution(loss):
    """Identity: the loss is the mean over the global batch."""
    return loss


def all_gather(tensor):
    """Identity: the batch is already global."""
    return tensor


def gather_rows(variable: keras.Variable, ids):
    """`variable[ids]` (`ops.take`; inside `jit` the table is an argument, no copy).

    JAX clamps out-of-range ids instead of raising, so
    `SelfDistillationModel.fit` checks the example count against the table
    before training (see `PSKDStep.check_fit`).
    """
    return ops.take(variable.value, ops.cast(ids, "int32"), axis=0)


def scatter_rows(variable: keras.Variable, ids, rows) -> None:
    """`variable[ids] = rows`, recorded in the train step's `StatelessScope`.

    Under `jit` with the state donated (Keras' JAX trainer) XLA updates the
    table in place.
    """
    ids = ops.reshape(ops.cast(ids, "int32"), (-1, 1))
    variable.assign(ops.scatter_update(variable.value, ids, ops.cast(rows, variable.dtype)))
