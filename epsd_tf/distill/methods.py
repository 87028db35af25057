"""Self-distillation (SD) method objects shared by scoring and training.

A method object says three things, and nothing about *how* a caller runs the
network:

* its hyperparameters (validated on construction);
* which batch shape it needs from the input pipeline (`batch_kind`);
* its loss, as a function of the student's logits and the teacher signal the
  caller supplies.

Both the EPSD scorer (`epsd_tf.pruning.scorers`, METHOD.md §2) and
`SelfDistillationModel.train_step` (METHOD.md §4) use these objects, each
forming the teacher signal in its own way. Keep the math here.

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

import keras
from keras import ops

from epsd_tf.distill import losses

# What each method needs from the input pipeline (see epsd_tf/data):
#   "plain": (images, labels)
#   "two_views": ({"image": view0, "image_view1": view1}, labels)
#   "class_pairs": ({"image": x, "pair_image": x_pair}, labels); pair shares the label
#   "example_ids": ({"image": x, "example_id": ids}, labels)
BATCH_KINDS = ("plain", "two_views", "class_pairs", "example_ids")


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
    """Base class. Subclasses set `name` and `batch_kind`."""

    name: str = ""
    batch_kind: str = "plain"

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


@keras.saving.register_keras_serializable(package="epsd_tf")
class NoDistillation(SelfDistillationMethod):
    """Plain cross-entropy training (the "none" method)."""

    name = "none"
    batch_kind = "plain"

    def loss(self, labels, student_logits):
        """Per-example CE, shape `[batch]`."""
        return losses.cross_entropy(labels, student_logits)


@keras.saving.register_keras_serializable(package="epsd_tf")
class DLB(SelfDistillationMethod):
    """Self-distillation from the last mini-batch (Shen et al., CVPR 2022).

    Loss at step t: `CE(view 0 of x_t) + CE(view 1 of x_{t-1})
    + distillation_weight · KL_T(stored logits of x_{t-1}, view 0 ‖ f(view 1 of x_{t-1}))`.

    Args:
        temperature: softening temperature T (paper: 3).
        distillation_weight: weight alpha of the KL term (paper: 1).
    """

    name = "dlb"
    batch_kind = "two_views"

    def __init__(self, temperature: float = 3.0, distillation_weight: float = 1.0):
        self.temperature = _check_temperature(temperature)
        self.distillation_weight = _check_non_negative(
            "distillation_weight", distillation_weight)

    def get_config(self) -> dict:
        return {"temperature": self.temperature,
                "distillation_weight": self.distillation_weight}

    def distillation_loss(self, teacher_logits, student_logits):
        """Weighted KL term, shape `[batch]`; teacher detached."""
        return self.distillation_weight * losses.distillation_kl(
            teacher_logits, student_logits, self.temperature)


@keras.saving.register_keras_serializable(package="epsd_tf")
class CSKD(SelfDistillationMethod):
    """Class-wise self-knowledge distillation (Yun et al., CVPR 2020).

    Loss: `CE(x) + distillation_weight · KL_T(f(x_pair) ‖ f(x))`, where `x_pair`
    is a different example of the same class and `f(x_pair)` is detached.

    Args:
        temperature: softening temperature T (paper: 4).
        distillation_weight: weight lambda of the KL term (paper: 1).
    """

    name = "cskd"
    batch_kind = "class_pairs"

    def __init__(self, temperature: float = 4.0, distillation_weight: float = 1.0):
        self.temperature = _check_temperature(temperature)
        self.distillation_weight = _check_non_negative(
            "distillation_weight", distillation_weight)

    def get_config(self) -> dict:
        return {"temperature": self.temperature,
                "distillation_weight": self.distillation_weight}

    def distillation_loss(self, teacher_logits, student_logits):
        """Weighted KL term, shape `[batch]`; teacher detached."""
        return self.distillation_weight * losses.distillation_kl(
            teacher_logits, student_logits, self.temperature)


@keras.saving.register_keras_serializable(package="epsd_tf")
class PSKD(SelfDistillationMethod):
    """Progressive self-knowledge distillation (Kim et al., ICCV 2021).

    Soft target `(1 - a_t) · onehot(y) + a_t · p_prev(x)`, with
    `a_t = alpha · (epoch + 1) / epochs` and `p_prev` the model's softmax on the
    same example in the previous epoch. Loss: soft-target cross-entropy.

    Args:
        alpha: final weight of the model's own past prediction (paper: 0.8).
    """

    name = "pskd"
    batch_kind = "example_ids"

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


METHODS = {cls.name: cls for cls in (NoDistillation, DLB, CSKD, PSKD)}


def get(method) -> SelfDistillationMethod:
    """Returns a method object from an instance, a name or None ("none")."""
    if method is None:
        return NoDistillation()
    if isinstance(method, SelfDistillationMethod):
        return method
    if isinstance(method, str) and method.lower() in METHODS:
        return METHODS[method.lower()]()
    raise ValueError(
        f"Unknown self-distillation method {method!r}; valid names: {sorted(METHODS)}")
