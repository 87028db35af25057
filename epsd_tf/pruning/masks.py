"""Masks from scores: global / layer-wise top-k with exact counts.

Mask functions never take gradients: `(scores, sparsity, ...) -> {name: 0/1}`.
The kept count is `round((1 - sparsity) · N)` over all N weights in `scores`,
exactly (ties broken by position, deterministically).

Layer densities for `scope="layerwise"`: `uniform` (every layer at the target
density) or `erk` (Erdős–Rényi-Kernel, Evci et al., "Rigging the Lottery",
ICML 2020: density ∝ Σ dims / Π dims, capped at 1). `min_density` is a floor
per layer against layer collapse (Tanaka et al., NeurIPS 2020). The iterative
schedule is ProsPr/SynFlow's exponential one (METHOD.md §2).
"""

from __future__ import annotations

import math
import numbers
from typing import Mapping

import numpy as np

SCOPES = ("global", "layerwise")
LAYER_DENSITIES = ("uniform", "erk")


def check_sparsity(sparsity: float) -> float:
    """Raises ValueError unless `0 <= sparsity < 1`."""
    if (isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real)
            or not 0.0 <= float(sparsity) < 1.0):
        raise ValueError(f"sparsity must be in [0, 1) (fraction removed), got {sparsity!r}")
    return float(sparsity)


def check_mask_options(scope: str, layer_density: str, min_density: float) -> None:
    """Raises ValueError for an unknown scope/density map or a bad `min_density`."""
    if scope not in SCOPES:
        raise ValueError(f"Unknown scope {scope!r}; valid: {list(SCOPES)}")
    if layer_density not in LAYER_DENSITIES:
        raise ValueError(f"Unknown layer_density {layer_density!r}; valid: "
                         f"{list(LAYER_DENSITIES)}")
    if scope == "global" and layer_density != "uniform":
        raise ValueError(f"layer_density={layer_density!r} needs scope='layerwise'.")
    if not 0.0 <= min_density <= 1.0:
        raise ValueError(f"min_density must be in [0, 1], got {min_density!r}")


def exponential_schedule(sparsity: float, rounds: int) -> list[float]:
    """Sparsity after each round r = 1..R: `1 - density^(r/R)`."""
    if int(rounds) != rounds or rounds < 1:
        raise ValueError(f"rounds must be an integer >= 1, got {rounds!r}")
    density = 1.0 - check_sparsity(sparsity)
    return [1.0 - density ** (r / rounds) for r in range(1, rounds + 1)]


def _apportion(targets: np.ndarray, low: np.ndarray, high: np.ndarray, total: int):
    """Integer counts in [low, high] summing to `total`, closest to real `targets`."""
    counts = np.clip(np.floor(targets), low, high).astype(np.int64)
    fraction = targets - np.floor(targets)
    order = np.argsort(-fraction, kind="stable")
    while counts.sum() < total:  # loops over layers, at most len(layers) times
        for i in order:
            if counts.sum() == total:
                break
            if counts[i] < high[i]:
                counts[i] += 1
    for i in order[::-1]:
        while counts.sum() > total and counts[i] > low[i]:
            counts[i] -= 1
    return counts


def layer_counts(shapes: list, candidates: np.ndarray, kept: int, layer_density: str,
                 floors: np.ndarray) -> np.ndarray:
    """Kept weights per layer (layer-wise scope) summing exactly to `kept`.

    Densities `clip(ε · w_l, floor, candidates)` with `w_l = 1` (uniform) or the
    ERK factor, ε found by bisection, then rounded by largest remainder.
    """
    sizes = np.array([math.prod(s) for s in shapes], dtype=np.float64)
    if layer_density == "erk":
        weights = np.array([sum(s) / math.prod(s) for s in shapes], dtype=np.float64)
    else:
        weights = np.ones(len(shapes))
    low, high = floors.astype(np.float64), candidates.astype(np.float64)

    def counts_for(epsilon):
        return np.clip(epsilon * weights * sizes, low, high)

    lo, hi = 0.0, 1.0
    while counts_for(hi).sum() < kept and hi < 1e30:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if counts_for(mid).sum() < kept else (lo, mid)
    return _apportion(counts_for(hi), floors, candidates, kept)


def masks_from_scores(scores: Mapping[str, np.ndarray], sparsity: float, *,
                      scope: str = "global", layer_density: str = "uniform",
                      min_density: float = 0.0, allow_empty_layers: bool = False,
                      keep: str = "highest",
                      previous_masks: Mapping[str, np.ndarray] | None = None,
                      ) -> dict[str, np.ndarray]:
    """0/1 masks keeping exactly `round((1 - sparsity) · N)` weights.

    Args:
        scores: `{weight name: scores}`; every weight here is subject to pruning.
        sparsity: fraction of the N weights in `scores` removed, in [0, 1).
        scope: `"global"` (one ranking over all weights) or `"layerwise"`.
        layer_density: `"uniform"` or `"erk"` (layer-wise only).
        min_density: each layer keeps at least `ceil(min_density · n_layer)`.
        allow_empty_layers: if False, a layer left with 0 weights is an error.
        keep: `"highest"` or `"lowest"` scores are kept (GraSP: lowest).
        previous_masks: iterative pruning; only weights still 1 can be kept.

    Returns:
        `{weight name: float32 0/1 array}` (same shapes as the scores).

    Raises:
        ValueError: bad options, infeasible floors, or an empty layer.
    """
    sparsity = check_sparsity(sparsity)
    check_mask_options(scope, layer_density, min_density)
    if keep not in ("highest", "lowest"):
        raise ValueError(f"keep must be 'highest' or 'lowest', got {keep!r}")
    if not scores:
        raise ValueError("No scores given: nothing to prune.")
    names = list(scores)
    shapes = [tuple(np.shape(scores[n])) for n in names]
    sign = 1.0 if keep == "highest" else -1.0
    flat = [sign * np.asarray(scores[n], np.float64).ravel() for n in names]
    allowed = [np.ones(f.size, bool) if previous_masks is None or n not in previous_masks
               else np.asarray(previous_masks[n]).ravel() > 0 for n, f in zip(names, flat)]
    sizes = np.array([f.size for f in flat])
    kept = int(round((1.0 - sparsity) * sizes.sum()))
    candidates = np.array([a.sum() for a in allowed])
    floors = np.minimum(np.ceil(min_density * sizes - 1e-9).astype(np.int64), candidates)
    if floors.sum() > kept:
        raise ValueError(f"min_density={min_density} needs {floors.sum()} kept weights but "
                         f"sparsity={sparsity} keeps only {kept}.")
    if candidates.sum() < kept:
        raise ValueError(f"Only {candidates.sum()} weights survive the previous masks; "
                         f"cannot keep {kept}.")
    # Rank candidates within each layer: best first (stable, so ties go by position).
    orders = [np.flatnonzero(a)[np.argsort(-f[a], kind="stable")]
              for f, a in zip(flat, allowed)]
    if scope == "layerwise":
        counts = layer_counts(shapes, candidates, kept, layer_density, floors)
    else:
        # Reserve each layer's floor, then rank all remaining candidates together.
        rest_layer = np.concatenate([np.full(len(o) - k, i)
                                     for i, (o, k) in enumerate(zip(orders, floors))])
        rest_score = np.concatenate([f[o[k:]] for f, o, k in zip(flat, orders, floors)])
        chosen = np.argsort(-rest_score, kind="stable")[:kept - floors.sum()]
        counts = floors + np.bincount(rest_layer[chosen], minlength=len(names))
    masks = {}
    for name, shape, order, count in zip(names, shapes, orders, counts):
        mask = np.zeros(math.prod(shape), np.float32)
        mask[order[:count]] = 1.0
        masks[name] = mask.reshape(shape)
    empty = [n for n, c in zip(names, counts) if c == 0]
    if empty and not allow_empty_layers:
        raise ValueError(f"Layers left with no weights at sparsity={sparsity}: {empty}; set "
                         "min_density > 0 or allow_empty_layers=True.")
    return masks
