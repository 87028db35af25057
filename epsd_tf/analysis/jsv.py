"""Mean Jacobian singular value (Mean-JSV), a trainability measure.

Lee et al., "A Signal Propagation Perspective for Pruning Neural Networks at
Initialization", ICLR 2020: a network propagates signals well when the
singular values of its input-output Jacobian are large (and concentrated); the
EPSD paper (Chen et al., AAAI 2024) reports the mean for pruned networks at
initialisation and after training (METHOD.md §5).

Definition used here. For example `x_i` (flattened to `D = H·W·C` inputs) let
`J_i = ∂ logits(x_i) / ∂ x_i`, a `[K, D]` matrix (`K` classes), and
`σ_i1 .. σ_ir` its `r = min(K, D)` singular values. Then

    per_example[i] = (1/r) Σ_j σ_ij          (mean over singular values)
    mean           = (1/N) Σ_i per_example[i]  (mean over the N examples)
    std            = population std (ddof=0) of per_example over the examples

The TensorFlow-specific Jacobian computation sits behind `_input_jacobians`.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from epsd_tf.pruning import autodiff


def _input_jacobians(model: keras.Model, images, training: bool) -> np.ndarray:
    """Per-example Jacobians of float32 logits w.r.t. the inputs, `[B, K, H, W, C]`.

    The model runs through `stateless_call`, so `training=True` (BatchNorm on
    batch statistics) never updates the model's moving statistics. In
    inference mode examples are independent and the per-example Jacobian is
    exact. In training mode BatchNorm couples the examples of a batch, so the
    full Jacobian `[B, K, B, H, W, C]` is taken and its diagonal blocks
    `∂ logits_i / ∂ x_i` kept (they include the path through the batch
    statistics); this costs `B` times more memory. The autodiff is the
    backend seam's (`epsd_tf.pruning.autodiff.jacobian`).
    """
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def logits(x):
        outputs, _ = model.stateless_call(trainable, non_trainable, x, training=training)
        return ops.cast(outputs, "float32")  # [B, K]

    if not training:
        return ops.convert_to_numpy(autodiff.jacobian(logits, images, per_example=True))
    full = ops.convert_to_numpy(autodiff.jacobian(logits, images, per_example=False))
    index = np.arange(images.shape[0])
    return full[index, :, index]  # [B, K, H, W, C]


def _check_images(model: keras.Model, images) -> np.ndarray:
    images = np.asarray(images, dtype=np.float32)
    expected = tuple(model.input_shape[1:])
    if images.ndim != len(expected) + 1 or len(images) == 0:
        raise ValueError(
            f"images must be a non-empty batch of shape [N, {', '.join(map(str, expected))}], "
            f"got shape {images.shape}"
        )
    if any(e is not None and e != s for e, s in zip(expected, images.shape[1:])):
        raise ValueError(
            f"images have example shape {images.shape[1:]}, the model expects {expected}"
        )
    return images


def mean_jsv(model: keras.Model, images, *, training: bool = False,
             batch_size: int = 32) -> dict:
    """Mean singular value of the logits-input Jacobian (Lee et al., ICLR 2020).

    Args:
        model: a single-input Keras model returning logits `[B, K]`.
        images: array `[N, H, W, C]` (already normalised as the model expects);
            use a fixed sample so values are comparable across models.
        training: run BatchNorm/Dropout in training mode (BN on the batch's
            statistics; see `_input_jacobians`). The model's state is never changed.
            At initialisation BN's moving statistics are still (0, 1), so a deep
            BN network (e.g. a sparse MobileNetV2) can give a vanishing inference-
            mode Jacobian; `training=True` measures the network as it trains.
        batch_size: examples per Jacobian computation (memory: `batch_size · K · D`
            floats, times `batch_size` again when `training=True`).

    Returns:
        `{"mean": float, "std": float, "per_example": float64 array [N]}` as
        defined in the module docstring.

    Raises:
        ValueError: `images` empty or not shaped like the model input, or
            `batch_size < 1`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    images = _check_images(model, images)
    per_example = []
    for start in range(0, len(images), batch_size):
        batch = ops.convert_to_tensor(images[start:start + batch_size])
        jacobians = _input_jacobians(model, batch, training)
        jacobians = jacobians.reshape(jacobians.shape[0], jacobians.shape[1], -1)  # [B, K, D]
        singular_values = np.linalg.svd(jacobians.astype(np.float64), compute_uv=False)  # [B, r]
        per_example.append(singular_values.mean(axis=1))
    per_example = np.concatenate(per_example)
    return {
        "mean": float(per_example.mean()),
        "std": float(per_example.std()),
        "per_example": per_example,
    }
