"""Where `SelfDistillationModel` keeps each method's carry between steps (METHOD.md §4).

The loss of every method is its `objective` (`methods.py`), the same function
the EPSD scorer differentiates. A step object here only says where the
objective's `carry` comes from during training and where the new one goes:

* `MethodStep` (none, CS-KD, DLB): the carry itself lives in non-trainable
  Keras variables shaped by `method.carry_spec` (nothing for none and CS-KD;
  DLB's previous batch, per replica).
* `PSKDStep`: a per-example table of last epoch's predictions; the carry of a
  batch is its rows plus the epoch's weight `a_t`, and the new predictions are
  scattered back into the table.

State lives in variables of a Keras layer tracked by the model, so
`save_weights`, checkpoints and `BackupAndRestore` capture it. Each step checks
its own construction arguments (`create`) and the batches it can train on.
`make_step` is the one method -> step dispatch. The `tf.distribute` details are
in `distribution.py`.
"""

from __future__ import annotations

from typing import Sequence

import keras
from absl import logging
from keras import ops

from epsd_tf.distill import distribution
from epsd_tf.distill import methods as methods_lib


def _state_variable(shape, dtype, name, kind):
    return keras.Variable("zeros", shape=tuple(shape), dtype=dtype, trainable=False,
                          autocast=False, name=name, **kind)


class MethodStep(keras.layers.Layer):
    """Carry held verbatim in variables (`method.carry_spec`), one copy per replica.

    Every step also holds an `epoch` counter (int32 scalar), set at the start of
    each epoch by `EpochCounter` (attached by `SelfDistillationModel.fit`).

    Args:
        method: a `methods.SelfDistillationMethod`.
        carry_spec: `{key: (shape, dtype)}` of the variables (from
            `method.carry_spec`); None or {} for none.
    """

    def __init__(self, method: methods_lib.SelfDistillationMethod,
                 carry_spec: dict | None = None, **kwargs):
        super().__init__(name=f"{method.name}_state", **kwargs)
        self.method = method
        self.epoch = _state_variable((), "int32", "epoch", distribution.GLOBAL)
        self.carry_variables = {
            key: _state_variable(shape, dtype, key, distribution.REPLICA_LOCAL)
            for key, (shape, dtype) in (carry_spec or {}).items()}
        self.built = True

    @classmethod
    def create(cls, method, *, num_classes: int, **unused) -> "MethodStep":
        """Builds the step from `SelfDistillationModel`'s arguments (checked here)."""
        return cls(method, method.carry_spec(None, (), num_classes))

    def check_batch(self, features) -> None:
        """Raises ValueError if a batch (or its spec) cannot be trained on."""

    def check_fit(self, x, epochs: int, *, is_dataset: bool, batch: int | None,
                  examples_per_epoch: int | None, replicas: int) -> None:
        """Raises ValueError before `fit` if `x`/`epochs` do not suit the method.

        Args:
            x: what `fit` was given.
            epochs: `fit`'s epochs.
            is_dataset: whether `x` is a `tf.data.Dataset`.
            batch: its static global batch size (None: not fixed, or no dataset).
            examples_per_epoch: batch x cardinality when both are known, else None.
            replicas: replicas in sync.
        """

    def read_carry(self, features) -> dict:
        """The carry of this step's objective."""
        return {key: ops.convert_to_tensor(variable)
                for key, variable in self.carry_variables.items()}

    def write_carry(self, features, new_carry: dict) -> None:
        """Stores the objective's new carry for the next step."""
        for key, variable in self.carry_variables.items():
            variable.assign(ops.cast(new_carry[key], variable.dtype))


class DLBStep(MethodStep):
    """DLB's previous batch (view 1, labels, view-0 logits, flag), per replica.

    The carry has a fixed per-replica batch size, so every batch must have it
    (`drop_remainder=True`); it carries across epochs (`distribution.REPLICA_LOCAL`:
    each replica keeps its own previous shard).
    """

    @classmethod
    def create(cls, method, *, num_classes: int, batch_size=None, image_shape=None,
               replicas: int = 1, **unused) -> "DLBStep":
        if batch_size is None or int(batch_size) <= 0:
            raise ValueError(f"DLB needs batch_size > 0 (its stored previous batch "
                             f"has that size), got batch_size={batch_size!r}")
        if batch_size % replicas:
            raise ValueError(f"DLB batch_size={batch_size} does not divide over "
                             f"{replicas} replicas; use a multiple of {replicas}")
        image_shape = None if image_shape is None else tuple(image_shape)
        if image_shape is None or any(d is None for d in image_shape):
            raise ValueError(f"DLB needs a fully known image_shape, got {image_shape}; "
                             f"pass image_shape=(H, W, C)")
        return cls(method, method.carry_spec(int(batch_size) // replicas, image_shape,
                                             num_classes))

    @property
    def batch_size(self) -> int:
        """Per-replica batch size of the stored previous batch."""
        return int(self.carry_variables["labels"].shape[0])

    def check_fit(self, x, epochs, *, is_dataset, batch, examples_per_epoch, replicas):
        if not is_dataset:
            raise ValueError(f"DLB needs a tf.data.Dataset or keras.utils.PyDataset of "
                             f"fixed-size batches (epsd_tf.data.for_method), got "
                             f"{type(x).__name__}")
        expected = self.batch_size * replicas
        if batch != expected:
            raise ValueError(f"DLB was built with batch_size={expected} but the dataset "
                             f"yields batches of {batch} (None = not fixed: batch with "
                             f"drop_remainder=True)")

    def check_batch(self, features) -> None:
        # None: not static (MultiWorkerMirroredStrategy's rebatched per-replica
        # input); the carry's assignment then checks the size when the step runs.
        for key in ("image", "image_view1"):
            shape = tuple(features[key].shape)
            if shape[0] is not None and shape[0] != self.batch_size:
                raise ValueError(
                    f"DLB was built for per-replica batches of {self.batch_size} examples "
                    f"but got {key!r} of shape {shape}; batch with drop_remainder=True "
                    f"and the batch_size given to SelfDistillationModel")


class PSKDStep(MethodStep):
    """PS-KD's table of each example's softmax from the previous epoch.

    A `[num_examples, num_classes]` float16 table; the carry of a batch is its
    rows (`example_id`) and `a_t = alpha·(epoch + 1)/epochs`, except at epoch 0,
    which has no previous prediction and uses the one-hot target (a = 0), as in
    the paper's code. After the update the batch's current predictions
    overwrite its rows, so epoch e+1 reads epoch e's predictions. The table is
    mirrored across replicas (`distribution.GLOBAL`).

    Args:
        method: a `methods.PSKD`.
        num_examples: rows of the table (example ids are 0 .. num_examples-1).
        num_classes: columns.
        epochs: training length T of the `a_t` schedule.
    """

    def __init__(self, method, num_examples: int, num_classes: int, epochs: int,
                 **kwargs):
        super().__init__(method, **kwargs)
        self.num_examples = int(num_examples)
        self.epochs = int(epochs)
        megabytes = self.num_examples * num_classes * 2 / 2**20
        logging.info("PS-KD prediction table: %d examples x %d classes float16 = %.1f MB "
                     "(per replica)", self.num_examples, num_classes, megabytes)
        self.predictions = _state_variable((self.num_examples, num_classes), "float16",
                                           "predictions", distribution.GLOBAL)

    @classmethod
    def create(cls, method, *, num_classes: int, num_examples=None, epochs=None,
               **unused) -> "PSKDStep":
        if num_examples is None or int(num_examples) <= 0:
            raise ValueError(f"PS-KD needs num_examples > 0 (rows of its prediction "
                             f"table, example ids 0..num_examples-1), got "
                             f"num_examples={num_examples!r}")
        if epochs is None or int(epochs) <= 0:
            raise ValueError(f"PS-KD needs epochs > 0 (its a_t schedule), got "
                             f"epochs={epochs!r}")
        return cls(method, num_examples, num_classes, epochs)

    def check_fit(self, x, epochs, *, is_dataset, batch, examples_per_epoch, replicas):
        if epochs > self.epochs:
            raise ValueError(f"fit(epochs={epochs}) runs past the PS-KD schedule of "
                             f"epochs={self.epochs} (a_t would exceed alpha); build the "
                             f"model with epochs={epochs}")
        if epochs < self.epochs:
            logging.warning("fit(epochs=%d) stops before the PS-KD schedule's %d "
                            "epochs; a_t will not reach alpha", epochs, self.epochs)
        if examples_per_epoch is not None and examples_per_epoch > self.num_examples:
            raise ValueError(
                f"The dataset yields {examples_per_epoch} examples per epoch but the PS-KD "
                f"table has num_examples={self.num_examples} rows (example ids must be "
                f"0 .. num_examples-1); build the model with num_examples = the "
                f"training-set size (splits.info.num_train)")

    def target_weight(self):
        """`a_t` of the current epoch (0 at epoch 0)."""
        epoch = ops.convert_to_tensor(self.epoch)
        return ops.where(epoch > 0, self.method.target_weight(epoch, self.epochs), 0.0)

    def read_carry(self, features) -> dict:
        rows = distribution.gather_rows(self.predictions, features["example_id"])
        return {"probabilities": ops.cast(rows, "float32"),
                "weight": ops.cast(self.target_weight(), "float32")}

    def write_carry(self, features, new_carry: dict) -> None:
        ids = distribution.all_gather(ops.reshape(features["example_id"], (-1,)))
        rows = distribution.all_gather(ops.cast(new_carry["probabilities"], "float16"))
        distribution.scatter_rows(self.predictions, ids, rows)


# The one method -> training-step dispatch (by method name).
STEPS = {"none": MethodStep, "cskd": MethodStep, "dlb": DLBStep, "pskd": PSKDStep}


def make_step(method: methods_lib.SelfDistillationMethod, *, num_classes: int,
              batch_size: int | None = None, num_examples: int | None = None,
              epochs: int | None = None, image_shape: Sequence[int] | None = None,
              replicas: int = 1) -> MethodStep:
    """The training-state layer of `method`; each step checks what it needs.

    Args:
        method: a method object (names are resolved by the caller, once).
        num_classes: logits width.
        batch_size: global batch size (DLB).
        num_examples: PS-KD table rows.
        epochs: PS-KD schedule length.
        image_shape: `(H, W, C)` (DLB).
        replicas: replicas in sync (DLB keeps `batch_size / replicas` per replica).
    """
    if method.name not in STEPS:
        raise ValueError(f"Unsupported method {method!r}; valid: {sorted(STEPS)}")
    return STEPS[method.name].create(
        method, num_classes=num_classes, batch_size=batch_size, num_examples=num_examples,
        epochs=epochs, image_shape=image_shape, replicas=replicas)
