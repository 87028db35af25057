"""TensorBoard summaries of the pruning stage: per-layer density and score histograms.

What TF-MOT users know from `tfmot.sparsity.keras.PruningSummaries`, for masks
made once at initialisation (EPSD, Chen et al., AAAI 2024): from a pruning
report (`report.build_report`) this writes, at one step,

- `pruning/density/<weight name>`: kept fraction of each prunable kernel,
- `pruning/scores/<weight name>`: the histogram of its final scores (the
  report's pre-binned `score_histogram`),
- `pruning/sparsity/masked_pool`, `pruning/sparsity/model`: the totals,
- `pruning/kept_overlap/...`: the float32-vs-float64 kept-set overlap, when
  the report has it (`score_stability=True`).

TensorFlow's summary writer is the only TensorFlow-specific part and stays in
`_tf_writer`; without TensorFlow (or TensorBoard) one notice is logged and
nothing is written.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from absl import logging

DENSITY = "pruning/density/"
SCORES = "pruning/scores/"
SPARSITY = "pruning/sparsity/"
OVERLAP = "pruning/kept_overlap/"


def _summary_items(report: Mapping) -> tuple[dict, dict]:
    """`({tag: scalar}, {tag: [k, 3] histogram buckets})` of a pruning report."""
    scalars, histograms = {}, {}
    for row in report.get("layers", []):
        scalars[DENSITY + row["name"]] = 1.0 - float(row["sparsity"])
        hist = row.get("score_histogram")
        if hist:
            edges = np.asarray(hist["edges"], np.float64)
            histograms[SCORES + row["name"]] = np.stack(
                [edges[:-1], edges[1:], np.asarray(hist["counts"], np.float64)], axis=1)
    totals = report.get("totals", {})
    for key, tag in (("masked_sparsity", "masked_pool"), ("model_sparsity", "model")):
        if key in totals:
            scalars[SPARSITY + tag] = float(totals[key])
    stable = report.get("score_stability")
    if stable:
        if stable.get("global") is not None:
            scalars[OVERLAP + "global"] = float(stable["global"])
        for name, value in stable.get("layers", {}).items():
            if value is not None:
                scalars[OVERLAP + name] = float(value)
    return scalars, histograms


def _tf_writer(logdir: str, scalars: dict, histograms: dict, step: int) -> None:
    """Writes the summaries with `tf.summary` (the TensorFlow seam of this module)."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    # TensorBoard's histogram plugin reads [k, 3] tensors of (left, right, count).
    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="histograms"))
    writer = tf.summary.create_file_writer(logdir)
    try:
        with writer.as_default(step=step):
            for tag, value in scalars.items():
                tf.summary.scalar(tag, value)
            for tag, buckets in histograms.items():
                tf.summary.write(tag, tf.constant(buckets, tf.float64), metadata=metadata)
        writer.flush()
    finally:
        writer.close()


def write_summaries(logdir: str, report: Mapping, step: int = 0) -> bool:
    """Writes a pruning report's TensorBoard summaries into `logdir`.

    Args:
        logdir: event-file directory, e.g. `<workdir>/tensorboard/pruning`.
        report: a `build_report` dict (rows without scores get no histogram).
        step: the summary step (0: pruning happens before training).

    Returns:
        True if written; False (one logged notice) when TensorFlow or its
        summary module is not importable.
    """
    scalars, histograms = _summary_items(report)
    try:
        _tf_writer(logdir, scalars, histograms, int(step))
    except ImportError as error:
        logging.warning("TensorBoard pruning summaries skipped: TensorFlow's summary "
                        "writer is not importable (%s).", error)
        return False
    logging.info("Pruning summaries (%d densities, %d score histograms) written to %s",
                 len([t for t in scalars if t.startswith(DENSITY)]), len(histograms), logdir)
    return True
