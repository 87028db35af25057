"""The one table of batch kinds: what each self-distillation method reads per step.

A method's `batch_kind` names the shape of the training batches it needs
(built by `epsd_tf.data.for_method`, whose own `BATCH_KINDS` tuple a test keeps
equal to this table because `data/` may not import `distill/`):

* "plain": `(images, labels)` — plain cross-entropy.
* "two_views": `({"image": view0, "image_view1": view1}, labels)` — DLB (Shen
  et al., CVPR 2022).
* "class_pairs": `({"image": x, "pair_image": x_pair}, labels)`, `x_pair` a
  different example of the same class — CS-KD (Yun et al., CVPR 2020).
* "example_ids": `({"image": x, "example_id": ids}, labels)` — PS-KD (Kim et
  al., ICCV 2021).

`passes_per_step` counts batch-sized forward/backward passes through the
network per optimizer step (the unit of `epsd_tf.analysis.cost`): DLB runs the
current batch and the previous batch's second view, CS-KD the batch and its
partners. Both the EPSD scorer and `SelfDistillationModel` read their batches
through `features`, so both accept and reject the same inputs.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping


@dataclasses.dataclass(frozen=True)
class BatchKind:
    """One row of the table.

    Attributes:
        name: the kind's name (a method's `batch_kind`).
        feature_keys: keys of the feature dict (`"image"` always first).
        passes_per_step: batch-sized forward/backward passes per step.
    """

    name: str
    feature_keys: tuple[str, ...]
    passes_per_step: int


BATCH_KINDS: dict[str, BatchKind] = {kind.name: kind for kind in (
    BatchKind("plain", ("image",), 1),
    BatchKind("two_views", ("image", "image_view1"), 2),
    BatchKind("class_pairs", ("image", "pair_image"), 2),
    BatchKind("example_ids", ("image", "example_id"), 1),
)}


def get(name: str) -> BatchKind:
    """The table row of `name`, or a ValueError listing the kinds."""
    if name not in BATCH_KINDS:
        raise ValueError(f"Unknown batch kind {name!r}; valid kinds: {list(BATCH_KINDS)}")
    return BATCH_KINDS[name]


def features(method, x) -> dict:
    """`x` as the feature dict `method` reads, or a ValueError naming what is missing.

    Args:
        method: a self-distillation method object (its `name` and `batch_kind`).
        x: the features of one batch: an image tensor (only for "plain") or a
            dict (or dict-like `TensorSpec` structure) with at least the kind's
            `feature_keys`. Extra keys are kept.
    """
    kind = get(method.batch_kind)
    if not isinstance(x, Mapping):
        if kind.name == "plain":
            return {"image": x}
        raise ValueError(
            f"Method {method.name!r} needs batches of "
            f"({{{', '.join(repr(k) for k in kind.feature_keys)}}}, labels), got "
            f"features of type {type(x).__name__}; build them with "
            f"epsd_tf.data.for_method(splits, method)")
    missing = [k for k in kind.feature_keys if k not in x]
    if missing:
        raise ValueError(
            f"Method {method.name!r} needs feature keys {list(kind.feature_keys)}; "
            f"the batch has {sorted(x)} (missing {missing}); build batches with "
            f"epsd_tf.data.for_method(splits, method)")
    return dict(x)
