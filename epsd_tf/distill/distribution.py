"""The distribution seam of self-distillation training.

What the SD train step needs from the backend beyond `keras.ops`: replica
count, loss scaling over replicas, all-gather, and in-place row reads/writes
of the PS-KD table. This file picks the backend's version once, at import:

* TensorFlow (`distribution_tf.py`): `tf.distribute` replica contexts,
  `SyncOnReadVariable`s, sparse `scatter_update` (multi-replica tested).
* JAX (`distribution_jax.py`): one process, no strategy; state is threaded
  through the jitted step by Keras, so reads and writes are pure array ops
  (`ops.take`, `ops.scatter_update`) recorded in the `StatelessScope`.

The two kinds of method state (`keras.Variable` kwargs, valid on both
backends; only `tf.distribute` acts on them):

* `REPLICA_LOCAL` (DLB's previous batch): each replica keeps its own copy.
* `GLOBAL` (PS-KD's table): every replica holds the same values.
"""

from __future__ import annotations

import keras

REPLICA_LOCAL = {"synchronization": "on_read", "aggregation": "only_first_replica"}
GLOBAL = {"synchronization": "on_write", "aggregation": "only_first_replica"}

if keras.backend.backend() == "jax":
    from epsd_tf.distill.distribution_jax import (
        all_gather,
        gather_rows,
        input_processes,
        num_replicas,
        scale_loss_for_distribution,
        scatter_rows,
    )
else:
    from epsd_tf.distill.distribution_tf import (
        all_gather,
        gather_rows,
        input_processes,
        num_replicas,
        scale_loss_for_distribution,
        scatter_rows,
    )

__all__ = ["GLOBAL", "REPLICA_LOCAL", "all_gather", "gather_rows", "input_processes",
           "num_replicas",
           "scale_loss_for_distribution", "scatter_rows"]
