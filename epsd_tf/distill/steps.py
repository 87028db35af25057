"""Per-method training steps of `SelfDistillationModel` (METHOD.md §4).

A step object knows how one SD method forms its teacher signal during
training, which loss pieces it returns, and which state it carries between
steps. State lives in non-trainable Keras variables of the step (a Keras
layer tracked by the model), so `save_weights`, checkpoints and
`BackupAndRestore` capture it. The loss math itself is in `methods.py` and
`losses.py`; the `tf.distribute` details are in `distribution.py`.

Each step works on one replica's batch of `b` examples and returns the
per-example pieces `ce [b]` and `sd [b]` (the caller averages and scales for
distribution) plus the student's logits on the current batch (for metrics).
"""

from __future__ import annotations

from typing import Sequence

import keras
from absl import logging
from keras import ops

from epsd_tf.distill import distribution
from epsd_tf.distill import losses
from epsd_tf.distill import methods as methods_lib

# Feature keys each batch kind needs (see methods.BATCH_KINDS, epsd_tf.data.for_method).
FEATURE_KEYS = {
    "plain": ("image",),
    "two_views": ("image", "image_view1"),
    "class_pairs": ("image", "pair_image"),
    "example_ids": ("image", "example_id"),
}


def _state_variable(shape, dtype, name, kind):
    return keras.Variable("zeros", shape=tuple(shape), dtype=dtype, trainable=False,
                          autocast=False, name=name, **kind)


class MethodStep(keras.layers.Layer):
    """Base: the "none" method (plain cross-entropy on `image`).

    Every step holds an `epoch` counter (int32 scalar), set at the start of each
    epoch by `EpochCounter` (attached by `SelfDistillationModel.fit`).
    """

    def __init__(self, method: methods_lib.SelfDistillationMethod, **kwargs):
        super().__init__(name=f"{method.name}_state", **kwargs)
        self.method = method
        self.epoch = _state_variable((), "int32", "epoch", distribution.GLOBAL)
        self.built = True

    @property
    def feature_keys(self) -> tuple[str, ...]:
        return FEATURE_KEYS[self.method.batch_kind]

    def features(self, x) -> dict:
        """Returns `x` as a dict of features, or raises naming what is missing."""
        if not isinstance(x, dict):
            if self.method.batch_kind == "plain":
                return {"image": x}
            raise ValueError(
                f"Method {self.method.name!r} needs batches of "
                f"({{{', '.join(repr(k) for k in self.feature_keys)}}}, labels), got "
                f"features of type {type(x).__name__}; build them with "
                f"epsd_tf.data.for_method(splits, method)")
        missing = [k for k in self.feature_keys if k not in x]
        if missing:
            raise ValueError(
                f"Method {self.method.name!r} needs feature keys {list(self.feature_keys)}; "
                f"the batch has {sorted(x)} (missing {missing}); build batches with "
                f"epsd_tf.data.for_method(splits, method)")
        return x

    def teacher(self, student, features, training: bool):
        """Teacher signal computed outside the gradient tape (None here)."""
        return None

    def compute_losses(self, student, features, labels, teacher, training: bool):
        """Returns `(logits [b, C], ce [b], sd [b])` for the current batch."""
        logits = student(features["image"], training=training)
        ce = losses.cross_entropy(labels, logits)
        return logits, ce, ops.zeros_like(ce)

    def update_state(self, features, labels, logits) -> None:
        """Writes the state the next step reads (nothing here)."""


class DLBStep(MethodStep):
    """DLB (Shen et al., CVPR 2022): distil from the last mini-batch.

    Step t forwards `concat(view 0 of x_t, view 1 of x_{t-1})` (2b images, one
    pass) and uses the logits stored at step t-1 for view 0 of x_{t-1} as the
    teacher of view 1 of x_{t-1}. Then it stores view 1 of x_t, y_t and the
    (detached) view-0 logits of x_t. On the very first step there is no stored
    batch: the second half is view 1 of x_t (so BatchNorm sees real images) and
    its CE and KL terms get weight 0, i.e. the loss is CE(view 0 of x_0) only.
    State carries across epochs. Per replica (`distribution.REPLICA_LOCAL`).

    Args:
        method: a `methods.DLB`.
        batch_size: per-replica batch size b (fixed: the stored batch has it).
        image_shape: `(H, W, C)` of one image.
        num_classes: logits width.
    """

    def __init__(self, method, batch_size: int, image_shape: Sequence[int],
                 num_classes: int, **kwargs):
        super().__init__(method, **kwargs)
        self.batch_size = int(batch_size)
        local = distribution.REPLICA_LOCAL
        self.previous_images = _state_variable(
            (self.batch_size, *image_shape), "float32", "previous_images", local)
        self.previous_labels = _state_variable((self.batch_size,), "int32",
                                               "previous_labels", local)
        self.previous_logits = _state_variable((self.batch_size, num_classes), "float32",
                                               "previous_logits", local)
        self.has_previous = _state_variable((), "float32", "has_previous", local)

    def _check_batch(self, images) -> None:
        if images.shape[0] != self.batch_size:
            raise ValueError(
                f"DLB was built for per-replica batches of {self.batch_size} examples "
                f"but got a batch of shape {tuple(images.shape)}; batch with "
                f"drop_remainder=True and the batch_size given to SelfDistillationModel")

    def compute_losses(self, student, features, labels, teacher, training: bool):
        view0, view1 = features["image"], features["image_view1"]     # [b, H, W, C]
        self._check_batch(view0)
        self._check_batch(view1)
        has_previous = ops.convert_to_tensor(self.has_previous)       # 0. or 1.
        previous = ops.where(has_previous > 0,
                             ops.cast(self.previous_images, view1.dtype), view1)
        logits = student(ops.concatenate([view0, previous], axis=0), training=training)
        current, previous_logits = logits[:self.batch_size], logits[self.batch_size:]
        ce = (losses.cross_entropy(labels, current)
              + has_previous * losses.cross_entropy(self.previous_labels, previous_logits))
        sd = has_previous * self.method.distillation_loss(self.previous_logits,
                                                          previous_logits)
        return current, ce, sd

    def update_state(self, features, labels, logits) -> None:
        self.previous_images.assign(ops.cast(features["image_view1"], "float32"))
        self.previous_labels.assign(ops.cast(labels, "int32"))
        self.previous_logits.assign(ops.cast(ops.stop_gradient(logits), "float32"))
        self.has_previous.assign(1.0)


class CSKDStep(MethodStep):
    """CS-KD (Yun et al., CVPR 2020): the same-class partner's prediction teaches.

    As in the official code the partner batch is forwarded separately, in
    training mode, without gradient (outside the tape), and its logits are the
    detached teacher of `image`'s logits.
    """

    def teacher(self, student, features, training: bool):
        return ops.stop_gradient(student(features["pair_image"], training=training))

    def compute_losses(self, student, features, labels, teacher, training: bool):
        logits = student(features["image"], training=training)
        ce = losses.cross_entropy(labels, logits)
        return logits, ce, self.method.distillation_loss(teacher, logits)


class PSKDStep(MethodStep):
    """PS-KD (Kim et al., ICCV 2021): last epoch's own predictions as soft targets.

    A `[num_examples, num_classes]` float16 table holds each example's softmax
    from the previous epoch; the target is `(1 - a_t)·onehot(y) + a_t·p_prev`
    with `a_t = alpha·(epoch + 1)/epochs`, except at epoch 0, which has no
    previous prediction and uses the one-hot target (a = 0), as in the paper's
    code. The current epoch's predictions overwrite the rows of this batch after
    the loss is formed, so epoch e+1 reads epoch e's predictions. The table is
    mirrored across replicas (`distribution.GLOBAL`).

    Reported pieces: `ce = (1 - a)·CE(y)`, `sd = a·CE(p_prev)`; their sum is
    `method.loss(soft_targets)` (soft CE is linear in the target).

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

    def target_weight(self):
        """`a_t` of the current epoch (0 at epoch 0)."""
        epoch = ops.convert_to_tensor(self.epoch)
        return ops.where(epoch > 0, self.method.target_weight(epoch, self.epochs), 0.0)

    def compute_losses(self, student, features, labels, teacher, training: bool):
        logits = student(features["image"], training=training)
        previous = ops.cast(distribution.gather_rows(self.predictions,
                                                     features["example_id"]), "float32")
        weight = self.target_weight()
        total = self.method.loss(self.method.soft_targets(labels, previous, weight), logits)
        ce = (1.0 - weight) * losses.cross_entropy(labels, logits)
        return logits, ce, total - ce

    def update_state(self, features, labels, logits) -> None:
        probabilities = ops.softmax(ops.cast(ops.stop_gradient(logits), "float32"), axis=-1)
        ids = distribution.all_gather(ops.reshape(features["example_id"], (-1,)))
        rows = distribution.all_gather(ops.cast(probabilities, "float16"))
        distribution.scatter_rows(self.predictions, ids, rows)
