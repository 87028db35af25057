"""JAX half of the distribution seam (see `distribution.py`).

No `tf.distribute`-style replicas: the jitted train step is one program over
the global batch, so every helper is the single-replica case. Under
`keras.distribution.DataParallel` (`run.distribution`, issue 15) the batch is
sharded over the devices (and processes) inside that one program: the loss is
already the global mean, DLB's carry is the previous GLOBAL batch (a
replicated variable, so the step equals the single-device one), and PS-KD's
table is written with the global batch's ids and rows.
"""

from __future__ import annotations

import jax
import keras
from keras import ops


def input_processes() -> int:
    """Processes that each feed a slice of every global batch (`jax.process_count()`)."""
    return jax.process_count()


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
