"""Per-layer pruning report: a dict, a text table, a JSON file, a log entry."""

from __future__ import annotations

import math
from typing import Mapping

import keras
import numpy as np
from absl import logging

from epsd_tf import files
from epsd_tf.pruning import model_masks


def _stats(values) -> dict | None:
    if values is None:
        return None
    values = np.asarray(values, np.float64)
    return {"min": float(values.min()), "max": float(values.max()),
            "mean": float(values.mean()), "std": float(values.std())}


HISTOGRAM_BINS = 30


def _histogram(values) -> dict | None:
    """Equal-width histogram of a layer's scores (for TensorBoard and plots)."""
    if values is None:
        return None
    counts, edges = np.histogram(np.asarray(values, np.float64).ravel(), HISTOGRAM_BINS)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def _sparsity(pruned: int, total: int) -> float:
    return pruned / total if total else 0.0


def build_report(model: keras.Model, scores: Mapping[str, np.ndarray] | None = None,
                 target_sparsity: float | None = None,
                 settings: Mapping | None = None,
                 score_stability: Mapping | None = None) -> dict:
    """Report of a (wrapped) model's masks.

    Args:
        model: a model; layers without a mask count as dense.
        scores: the final scores, for per-layer statistics (optional).
        target_sparsity: the requested sparsity of the pruned pool (optional).
        settings: how the masks were made (scorer, method, ...), stored as is.
        score_stability: the float32-vs-float64 kept-set overlap
            (`stability.kept_overlap` plus the two dtypes), stored as is.

    Returns:
        `{"layers": [row, ...], "totals": {...}, "target_sparsity", "settings"}`;
        a row has `name, layer, shape, parameters, kept, sparsity, masked,
        score` (min/max/mean/std or None), `score_histogram` (`edges`,
        `counts`; or None) and, with `score_stability`, `kept_overlap`.
        Totals give sparsity over the masked pool, over all prunable weights
        and over every model weight.
    """
    rows = []
    for weight in model_masks.prunable_weights(model):
        parameters = int(math.prod(weight.variable.shape))
        kept = parameters if weight.mask is None else int(np.sum(weight.mask.numpy() != 0))
        rows.append({
            "name": weight.name, "layer": weight.layer_path,
            "shape": [int(d) for d in weight.variable.shape], "parameters": parameters,
            "kept": kept, "sparsity": _sparsity(parameters - kept, parameters),
            "masked": weight.mask is not None,
            "score": _stats(scores.get(weight.name)) if scores else None,
            "score_histogram": _histogram(scores.get(weight.name)) if scores else None})
        if score_stability:
            rows[-1]["kept_overlap"] = score_stability["layers"].get(weight.name)
    mask_ids = {id(w.mask) for w in model_masks.prunable_weights(model) if w.mask is not None}
    model_parameters = sum(int(math.prod(v.shape)) for v in model.weights
                           if id(v) not in mask_ids)
    masked = [r for r in rows if r["masked"]]
    pool = sum(r["parameters"] for r in masked)
    pool_kept = sum(r["kept"] for r in masked)
    prunable = sum(r["parameters"] for r in rows)
    pruned = prunable - sum(r["kept"] for r in rows)
    totals = {
        "masked_parameters": pool, "masked_kept": pool_kept,
        "masked_sparsity": _sparsity(pool - pool_kept, pool),
        "prunable_parameters": prunable, "prunable_kept": prunable - pruned,
        "prunable_sparsity": _sparsity(pruned, prunable),
        "model_parameters": model_parameters, "model_pruned": pruned,
        "model_sparsity": _sparsity(pruned, model_parameters),
    }
    report = {"layers": rows, "totals": totals, "target_sparsity": target_sparsity,
              "settings": dict(settings or {})}
    if score_stability:
        report["score_stability"] = dict(score_stability)
    return report


def format_report(report: Mapping) -> str:
    """The report as a fixed-width text table."""
    header = (f"{'weight':<40} {'shape':<18} {'params':>9} {'kept':>9} {'sparsity':>8} "
              f"{'score min':>10} {'score mean':>10} {'score max':>10}")
    lines = [header, "-" * len(header)]
    for row in report["layers"]:
        score = row["score"] or {}
        numbers = " ".join(f"{score[k]:>10.3g}" if k in score else f"{'-':>10}"
                           for k in ("min", "mean", "max"))
        dense = "" if row["masked"] else " (dense)"
        lines.append(f"{row['name']:<40} {str(tuple(row['shape'])):<18} "
                     f"{row['parameters']:>9} {row['kept']:>9} {row['sparsity']:>8.4f} "
                     f"{numbers}{dense}")
    t = report["totals"]
    lines.append("-" * len(header))
    target = report.get("target_sparsity")
    lines.append(f"masked pool: {t['masked_kept']}/{t['masked_parameters']} kept, sparsity "
                 f"{t['masked_sparsity']:.4f}" + (f" (target {target:.4f})"
                                                   if target is not None else ""))
    stable = report.get("score_stability")
    if stable and stable.get("global") is not None:
        lines.append(f"kept-set overlap, {' vs '.join(stable['dtypes'])} scores: "
                     f"{stable['global']:.4f}")
    lines.append(f"all prunable: sparsity {t['prunable_sparsity']:.4f}; whole model: "
                 f"{t['model_pruned']}/{t['model_parameters']} pruned, sparsity "
                 f"{t['model_sparsity']:.4f}")
    return "\n".join(lines)


def log_report(report: Mapping) -> None:
    """Logs the text table with absl.logging."""
    logging.info("Pruning report:\n%s", format_report(report))


def write_report(report: Mapping, path: str) -> str:
    """Writes the report as JSON to `path` atomically (parents created); returns path."""
    return files.write_json(path, report, sort_keys=False, default=str)
