"""TensorFlow half of the distribution seam (see `distribution.py`).

Everything `tf.distribute`- or `tf.Variable`-specific that the SD train step
needs lives here, so that the rest of `epsd_tf.distill` is `keras.ops` only.

How method state behaves under `tf.distribute.MirroredStrategy` (checked by
tests/distill/test_distributed.py on two logical CPUs):

* Replica-local state (DLB's previous batch): `keras.Variable(...,
  synchronization="on_read", aggregation="only_first_replica")` becomes a
  `SyncOnReadVariable`; each replica reads and writes its own copy inside
  `train_step`. A checkpoint stores replica 0's copy and a restore writes it to
  every replica (still a consistent images/labels/logits triple).
* Global state (PS-KD's table): a mirrored variable with
  `aggregation="only_first_replica"`. Each replica all-gathers the example ids
  and predictions of the whole global batch and applies the identical scatter,
  so every copy stays equal (what replica 0 writes is written everywhere).
"""

from __future__ import annotations

import keras
import tensorflow as tf


def num_replicas() -> int:
    """Replicas in sync of the current strategy (1 without a strategy)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def input_processes() -> int:
    """1: every worker's input pipeline yields global batches; tf.distribute shards them."""
    return 1


def scale_loss_for_distribution(loss):
    """Divides a per-replica mean loss by the replica count.

    Gradients are summed over replicas, so this makes the update the gradient
    of the mean over the global batch (as Keras' own `compute_loss` does).
    """
    replicas = num_replicas()
    return loss if replicas == 1 else loss / float(replicas)


def all_gather(tensor):
    """Concatenates `tensor` over replicas along axis 0 (identity for one)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return tensor
    return context.all_gather(tensor, axis=0)


def gather_rows(variable: keras.Variable, ids):
    """`variable[ids]` read in place (no copy of the whole table).

    Ids outside `0 .. rows-1` raise `InvalidArgumentError` naming the table size
    (on GPU a plain gather would silently read zeros). `SelfDistillationModel.fit`
    rejects most such datasets up front; this catches the rest.

    Args:
        variable: a `[rows, ...]` Keras variable.
        ids: integer row ids, shape `[batch]`.
    """
    ids = tf.cast(ids, tf.int32)
    rows = tf.shape(variable.value, out_type=tf.int32)[0]
    message = (f"PS-KD example_id outside 0 .. num_examples-1 for the table "
               f"{variable.path!r}; build SelfDistillationModel with num_examples = the "
               f"training-set size")
    with tf.control_dependencies([
            tf.debugging.assert_non_negative(ids, message=message),
            tf.debugging.assert_less(ids, rows, message=message)]):
        return tf.gather(variable.value, ids)


def scatter_rows(variable: keras.Variable, ids, rows) -> None:
    """`variable[ids] = rows` in place (a sparse update, no table copy).

    Under a multi-replica strategy call it with the all-gathered ids and rows,
    so that every replica writes the same thing (see module docstring).
    """
    rows = tf.cast(rows, variable.dtype)
    variable.value.scatter_update(tf.IndexedSlices(rows, tf.cast(ids, tf.int32)))
