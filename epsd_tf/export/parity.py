"""Parity of a reloaded artifact against the Keras model on a held-out batch.

An exported file is only useful if it computes what was trained. Each artifact
is reloaded and run on the same held-out images; its top-1 predictions must
agree with the Keras model's on at least 99 % of them (float artifacts) or
97 % (int8, which moves logits by quantisation noise). The largest absolute
logit difference is reported alongside. A failure raises `ParityError`.
"""

import numpy as np

FLOAT_MIN_AGREEMENT = 0.99
INT8_MIN_AGREEMENT = 0.97


class ParityError(RuntimeError):
    """A reloaded artifact disagrees with the Keras model beyond tolerance."""


def compare(reference: np.ndarray, candidate: np.ndarray,
            min_agreement: float) -> dict:
    """Compares logits `[N, num_classes]` of an artifact with the reference.

    Args:
        reference: Keras model logits on the held-out batch.
        candidate: the reloaded artifact's logits on the same batch.
        min_agreement: smallest acceptable top-1 agreement in [0, 1].

    Returns:
        `{"top1_agreement", "max_abs_logit_diff", "examples", "min_agreement",
        "passed"}`.

    Raises:
        ParityError: the artifact's logits have a different shape.
    """
    reference = np.asarray(reference, np.float32)
    candidate = np.asarray(candidate, np.float32)
    if reference.shape != candidate.shape:
        raise ParityError(
            f"Artifact returned logits of shape {candidate.shape}, the Keras "
            f"model {reference.shape}.")
    agreement = float(np.mean(np.argmax(reference, -1) == np.argmax(candidate, -1)))
    return {"top1_agreement": agreement,
            "max_abs_logit_diff": float(np.max(np.abs(reference - candidate))),
            "examples": int(reference.shape[0]), "min_agreement": min_agreement,
            "passed": agreement >= min_agreement}


def check(result: dict, name: str) -> None:
    """Raises `ParityError` if a `compare` result did not pass."""
    if not result["passed"]:
        raise ParityError(
            f"Parity check failed for {name!r}: top-1 agreement "
            f"{result['top1_agreement']:.2%} < required {result['min_agreement']:.0%} "
            f"on {result['examples']} held-out examples (max |logit diff| "
            f"{result['max_abs_logit_diff']:.4g}). The artifact was written but "
            "must not be deployed.")
