"""Self-distillation (SD) methods: hyperparameters, batch kind and ONE objective.

A method object owns its whole contract:

* its hyperparameters (validated on construction, `get_config`);
* the batch shape it needs (`batch_kind`, a row of `batch_kinds.BATCH_KINDS`);
* the state it carries from one step to the next (`carry_spec`), and
* its loss, as one pure function of `keras.ops`:

      objective(forward, features, labels, carry) -> (ce, sd, logits, new_carry)

  `forward(images) -> logits` is the network in training mode, supplied by the
  caller (the scorer's stateless call, or the student inside `train_step`);
  `carry` and `new_carry` are dicts of tensors with the keys and shapes of
  `carry_spec`. `ce` and `sd` are per-example `[b]` (the loss is
  `mean(ce) + mean(sd)`; the caller reduces, so that `tf.distribute` can scale
  the replica means); `logits` are the student's on `features["image"]`.
  Teachers are `ops.stop_gradient`-ed inside the objective, which works on
  every backend.

The EPSD scorer (`epsd_tf.pruning.meta_gradient`, METHOD.md §2) threads the
carry through its unrolled inner steps, starting from `initial_carry` (zeros);
`SelfDistillationModel.train_step` (METHOD.md §4, `steps.py`) reads the carry
from its non-trainable state variables and stores the new one. The two callers
differ only in where the carry comes from (see PS-KD), never in the loss.

Methods:
  DLB: Shen et al., "Self-Distillation from the Last Mini-Batch for Consistency
    Regularization", CVPR 2022.
  CSKD: Yun et al., "Regularizing Class-wise Predictions via
    Self-knowledge Distillation", CVPR 2020.
  PSKD: Kim et al., "Self-Knowledge Distillation with Progressive Refinement of
    Targets", ICCV 2021.
  NoDistillation: plain cross-entropy, to measure what SD adds.
"""

from __future__ import annotations

from typing import Callable, Sequence

import keras
from keras import ops

from epsd_tf.distill import batch_kinds, losses

# Names of the batch kinds (the table itself is `batch_kinds.BATCH_KINDS`).
BATCH_KINDS = tuple(batch_kinds.BATCH_KINDS)


def _check_non_negative(name: str, value: float) -> float:
    value = float(value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


def _check_temperature(value: float) -> float:
    value = float(value)
    if value <= 0:
        raise ValueError(f"temperature must be > 0, got {value!r}")
    return value


class SelfDistillationMethod:
    """Base class. Subclasses set `name`, `batch_kind` and `objective`."""

    name: str = ""
    batch_kind: str = "plain"
    # Whether the EPSD scorer reuses one batch for every inner step (PS-KD's
    # scoring teacher is the previous inner step's prediction on the same batch).
    scoring_reuses_batch: bool = False

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict) -> "SelfDistillationMethod":
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))

    @property
    def passes_per_step(self) -> int:
        """Batch-sized forward/backward passes per step (`batch_kinds` table)."""
        return batch_kinds.get(self.batch_kind).passes_per_step

    def carry_spec(self, batch_size: int, image_shape: Sequence[int],
                   num_classes: int) -> dict:
        """`{key: (shape, dtype)}` of the carry (empty: nothing is carried)."""
        return {}

    def initial_carry(self, batch_size: int, image_shape: Sequence[int],
                      num_classes: int) -> dict:
        """The carry before the first step: zeros of `carry_spec`."""
        return {key: ops.zeros(shape, dtype) for key, (shape, dtype)
                in self.carry_spec(batch_size, image_shape, num_classes).items()}

    def objective(self, forward: Callable, features: dict, labels, carry: dict):
        """Returns `(ce [b], sd [b], logits [b, C], new_carry)`; see module doc."""
        raise NotImplementedError


def _two_forwards(forward: Callable, first, second):
    """`(forward(first), forward(second))`: two forwards, in this order.

    A caller may offer `forward.pair(first, second)` computing the same in one
    batched call (the JAX training step: `distill/train_step_jax.py`).
    """
    pair = getattr(forward, "pair", None)
    if pair is not None:
        return pair(first, second)
    return forward(first), forward(second)


@keras.saving.register_keras_serializable(package="epsd_tf")
class NoDistillation(SelfDistillationMethod):
    """Plain cross-entropy training (the "none" method)."""

    name = "none"
    batch_kind = "plain"

    def loss(self, labels, student_logits):
        """Per-example CE, shape `[batch]`."""
        return losses.cross_entropy(labels, student_logits)

    def objective(self, forward, features, labels, carry):
        logits = forward(features["image"])
        ce = self.loss(labels, logits)
        return ce, ops.zeros_like(ce), logits, {}


class _KLDistillation(SelfDistillationMethod):
    """Common part of DLB and CS-KD: a temperature-T KL term with a weight."""

    def __init__(self, temperature: float, distillation_weight: float = 1.0):
        self.temperature = _check_temperature(temperature)
        self.distillation_weight = _check_non_negative(
            "distillation_weight", distillation_weight)

    def get_config(self) -> dict:
        return {"temperature": self.temperature,
                "distillation_weight": self.distillation_weight}

    def distillation_loss(self, teacher_logits, student_logits):
        """Weighted `T²·KL_T(teacher ‖ student)`, shape `[batch]`; teacher detached."""
        return self.distillation_weight * losses.distillation_kl(
            teacher_logits, student_logits, self.temperature)


@keras.saving.register_keras_serializable(package="epsd_tf")
class DLB(_KLDistillation):
    """Self-distillation from the last mini-batch (Shen et al., CVPR 2022).

    As the official code (`dlb.py`, `train_one_epoch`) computes it, step t runs
    two SEPARATE forward passes — view 0 of the new batch x_t, then view 1 of
    the previous batch x_{t-1} — so BatchNorm normalises each with its own
    batch statistics, and

        loss = ½·(mean CE(view 0 of x_t) + mean CE(view 1 of x_{t-1}))
               + alpha · mean T²·KL_T(z_{t-1} ‖ f(view 1 of x_{t-1}))

    (the official CE is one mean over the concatenated 2b logits; its KL is
    `batchmean`), with `z_{t-1}` the detached view-0 logits of x_{t-1} from
    step t-1. Step 0 has no previous batch (`carry["has_previous"] = 0`): the
    loss is CE(view 0 of x_0) alone, as the official code's first step; the
    second forward still runs (on view 1 of x_0, at weight 0) so that the step
    has one shape for every t.

    Carry: `images` (view 1 of the last batch), `labels`, `logits` (its view-0
    logits) and `has_previous` (0. or 1.).

    Args:
        temperature: softening temperature T (paper: 3).
        distillation_weight: weight alpha of the KL term (paper: 1).
    """

    name = "dlb"
    batch_kind = "two_views"

    def __init__(self, temperature: float = 3.0, distillation_weight: float = 1.0):
        super().__init__(temperature, distillation_weight)

    def carry_spec(self, batch_size, image_shape, num_classes):
        return {"images": ((batch_size, *image_shape), "float32"),
                "labels": ((batch_size,), "int32"),
                "logits": ((batch_size, num_classes), "float32"),
                "has_previous": ((), "float32")}

    def objective(self, forward, features, labels, carry):
        view0, view1 = features["image"], features["image_view1"]
        previous_view1 = ops.where(carry["has_previous"] > 0,
                                   ops.cast(carry["images"], view1.dtype), view1)
        logits, previous_logits = _two_forwards(forward, view0, previous_view1)
        current_ce = losses.cross_entropy(labels, logits)
        has_previous = ops.cast(carry["has_previous"], current_ce.dtype)
        half = 0.5 * has_previous  # weight of each half's CE: 1 at step 0, ½ after
        ce = ((1.0 - half) * current_ce
              + half * losses.cross_entropy(carry["labels"], previous_logits))
        sd = has_previous * self.distillation_loss(carry["logits"], previous_logits)
        new_carry = {"images": view1, "labels": ops.cast(labels, "int32"),
                     "logits": ops.stop_gradient(logits),
                     "has_previous": ops.ones_like(carry["has_previous"])}
        return ce, sd, logits, new_carry


@keras.saving.register_keras_serializable(package="epsd_tf")
class CSKD(_KLDistillation):
    """Class-wise self-knowledge distillation (Yun et al., CVPR 2020).

    Loss: `CE(x) + distillation_weight · KL_T(f(x_pair) ‖ f(x))`, where `x_pair`
    is a different example of the same class; as in the official code the
    partner goes through the network in training mode after `x`, and its
    logits are a detached teacher (`ops.stop_gradient`). Nothing is carried.

    Args:
        temperature: softening temperature T (paper: 4).
        distillation_weight: weight lambda of the KL term (paper: 1).
    """

    name = "cskd"
    batch_kind = "class_pairs"

    def __init__(self, temperature: float = 4.0, distillation_weight: float = 1.0):
        super().__init__(temperature, distillation_weight)

    def objective(self, forward, features, labels, carry):
        logits = forward(features["image"])
        partner = ops.stop_gradient(forward(features["pair_image"]))
        ce = losses.cross_entropy(labels, logits)
        return ce, self.distillation_loss(partner, logits), logits, {}


@keras.saving.register_keras_serializable(package="epsd_tf")
class PSKD(SelfDistillationMethod):
    """Progressive self-knowledge distillation (Kim et al., ICCV 2021).

    Soft target `(1 - a) · onehot(y) + a · p_prev(x)`; loss: soft-target
    cross-entropy, reported as `ce = (1 - a)·CE(y)` and `sd = a·CE(p_prev)`
    (soft CE is linear in the target, so `ce + sd` is the loss).

    Carry: `probabilities` (`p_prev` of this batch's examples) and `weight` (a).
    Where it comes from is the only difference between the two callers:
    training reads the previous epoch's prediction from a per-example table
    with `a = a_t = alpha · (epoch + 1) / epochs` (a = 0 at epoch 0); the EPSD
    scorer reuses one batch and passes the previous inner step's prediction
    with `a = alpha` (METHOD.md §2), which is what `new_carry` holds. The zero
    initial carry gives one-hot targets, i.e. plain CE.

    Args:
        alpha: final weight of the model's own past prediction (paper: 0.8).
    """

    name = "pskd"
    batch_kind = "example_ids"
    scoring_reuses_batch = True

    def __init__(self, alpha: float = 0.8):
        alpha = float(alpha)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        self.alpha = alpha

    def get_config(self) -> dict:
        return {"alpha": self.alpha}

    def target_weight(self, epoch, epochs: int):
        """`a_t = alpha · (epoch + 1) / epochs` (epoch counted from 0)."""
        if epochs <= 0:
            raise ValueError(f"epochs must be > 0, got {epochs!r}")
        return self.alpha * (ops.cast(epoch, "float32") + 1.0) / float(epochs)

    def soft_targets(self, labels, previous_probabilities, target_weight):
        """`(1 - a) · onehot(y) + a · p_prev`, shape `[batch, classes]`."""
        previous_probabilities = ops.cast(previous_probabilities, "float32")
        num_classes = ops.shape(previous_probabilities)[-1]
        one_hot = ops.one_hot(ops.cast(ops.reshape(labels, (-1,)), "int32"), num_classes)
        return (1.0 - target_weight) * one_hot + target_weight * previous_probabilities

    def loss(self, soft_targets, student_logits):
        """Per-example soft-target CE, shape `[batch]`."""
        return losses.soft_cross_entropy(soft_targets, student_logits)

    def carry_spec(self, batch_size, image_shape, num_classes):
        return {"probabilities": ((batch_size, num_classes), "float32"),
                "weight": ((), "float32")}

    def objective(self, forward, features, labels, carry):
        logits = forward(features["image"])
        one_hot_ce = losses.cross_entropy(labels, logits)
        weight = ops.cast(carry["weight"], one_hot_ce.dtype)
        ce = (1.0 - weight) * one_hot_ce
        sd = weight * losses.soft_cross_entropy(carry["probabilities"], logits)
        detached = ops.stop_gradient(logits)
        probabilities = ops.softmax(ops.cast(detached, losses.compute_dtype(detached)),
                                    axis=-1)
        new_carry = {"probabilities": probabilities,
                     "weight": ops.full_like(carry["weight"], self.alpha)}
        return ce, sd, logits, new_carry


METHODS = {cls.name: cls for cls in (NoDistillation, DLB, CSKD, PSKD)}


def get(method) -> SelfDistillationMethod:
    """Returns a method object from an instance, a name or None ("none").

    Public entry points call this once; everything below them takes objects.
    """
    if method is None:
        return NoDistillation()
    if isinstance(method, SelfDistillationMethod):
        return method
    if isinstance(method, str) and method.lower() in METHODS:
        return METHODS[method.lower()]()
    raise ValueError(
        f"Unknown self-distillation method {method!r}; valid names: {sorted(METHODS)}")
