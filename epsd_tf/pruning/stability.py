"""How much two masks agree: the kept-set overlap (issue 14).

Used for the float32-vs-float64 stability diagnostic of `prune_at_init(...,
score_stability=True)` and for comparing two scorers' selections (EPSD vs
ProsPr). The overlap of mask `a` against a reference `b` is
`|kept_a ∩ kept_b| / |kept_b|`, globally and per layer.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np


def kept_overlap(masks: Mapping[str, np.ndarray],
                 reference: Mapping[str, np.ndarray]) -> dict:
    """Overlap of the kept sets of `masks` and `reference` (same names, shapes).

    Args:
        masks: `{weight name: 0/1 array}`.
        reference: masks over the same weights; the denominator is its kept count.

    Returns:
        `{"global": float, "layers": {name: float or None}, "kept": int,
        "shared": int}`; a layer the reference keeps nothing of gets None.

    Raises:
        ValueError: the two mask dicts cover different weights or shapes.
    """
    if set(masks) != set(reference):
        raise ValueError(f"Masks cover different weights: {sorted(set(masks) ^ set(reference))}")
    layers, shared_total, kept_total = {}, 0, 0
    for name, ref in reference.items():
        ref = np.asarray(ref) != 0
        other = np.asarray(masks[name]) != 0
        if ref.shape != other.shape:
            raise ValueError(f"Mask {name!r} has shapes {other.shape} and {ref.shape}.")
        shared, kept = int(np.sum(ref & other)), int(np.sum(ref))
        layers[name] = shared / kept if kept else None
        shared_total += shared
        kept_total += kept
    return {"global": shared_total / kept_total if kept_total else None, "layers": layers,
            "kept": kept_total, "shared": shared_total}
