"""Self-distillation loss functions, written in `keras.ops` only.

Every function returns a per-example loss of shape `[batch]` so that callers
choose the reduction (mean over the batch, or the global-batch scaling a
`tf.distribute` strategy needs) and can weight examples.

References:
    Hinton et al., "Distilling the Knowledge in a Neural Network", 2015 (the T²
    factor). The SD methods that combine these terms are in `methods.py`.
"""

from __future__ import annotations

import keras
from keras import ops


def compute_dtype(*tensors) -> str:
    """float64 if any tensor is float64, else float32 (half precision upcast).

    Losses are computed in at least float32 (logits are float16 under mixed
    precision) and in float64 when the scorer runs in float64.
    """
    wide = any(hasattr(t, "dtype") and keras.backend.standardize_dtype(t.dtype) == "float64"
               for t in tensors)
    return "float64" if wide else "float32"


def cross_entropy(labels, logits):
    """Sparse softmax cross-entropy.

    Args:
        labels: integer class ids, shape `[batch]`.
        logits: unnormalised scores, shape `[batch, classes]`.

    Returns:
        Per-example loss, shape `[batch]`, float32 (float64 for float64 logits).
    """
    logits = ops.cast(logits, compute_dtype(logits))
    labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
    return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def soft_cross_entropy(target_probabilities, logits):
    """Cross-entropy against a soft target distribution (PS-KD's loss).

    Args:
        target_probabilities: shape `[batch, classes]`, rows sum to 1. Treated as a
            constant: no gradient flows into it.
        logits: shape `[batch, classes]`.

    Returns:
        Per-example loss `-Σ_c target_c · log softmax(logits)_c`, shape `[batch]`.
    """
    dtype = compute_dtype(target_probabilities, logits)
    targets = ops.stop_gradient(ops.cast(target_probabilities, dtype))
    log_probabilities = ops.log_softmax(ops.cast(logits, dtype), axis=-1)
    return -ops.sum(targets * log_probabilities, axis=-1)


def distillation_kl(teacher_logits, student_logits, temperature: float):
    """`T² · KL(softmax(teacher / T) ‖ softmax(student / T))`, teacher detached.

    Args:
        teacher_logits: shape `[batch, classes]`; gradients are stopped here.
        student_logits: shape `[batch, classes]`.
        temperature: softening temperature `T > 0`.

    Returns:
        Per-example loss, shape `[batch]`. Zero when the two logit rows agree up to
        an additive constant; scales with `T²` as in Hinton et al.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    dtype = compute_dtype(teacher_logits, student_logits)
    teacher = ops.stop_gradient(ops.cast(teacher_logits, dtype)) / temperature
    student = ops.cast(student_logits, dtype) / temperature
    teacher_log_probabilities = ops.log_softmax(teacher, axis=-1)
    student_log_probabilities = ops.log_softmax(student, axis=-1)
    kl = ops.sum(
            ops.exp(teacher_log_probabilities)
            * (teacher_log_probabilities - student_log_probabilities),
            axis=-1,
    )
    return kl * (temperature**2)
