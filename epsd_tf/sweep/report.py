"""The result files of a sweep: tables (`analysis.results`) and plots (`analysis.plots`).

Written into the sweep root: `results.csv` (one row per cell),
`results_summary.csv` and `results.md` (mean ± sample std over seeds: test
accuracy, and when measured Mean-JSV at init, layers left at the per-layer
floor, landscape sharpness), `plots/accuracy_vs_sparsity_<method>.png`,
`plots/layer_density_<cell>.png` for the chosen cells (and
`plots/layer_density.png` with them side by side), and, for cells run with
`run.landscape = @loss_landscape`, `plots/landscape_<method>_s<sparsity>.png`
overlaying the first seed's 1-D landscapes with the dense cells'.
"""

from __future__ import annotations

import os
from typing import Sequence

from absl import logging

from epsd_tf import files
from epsd_tf.analysis import landscape_stage, plots, results
from epsd_tf.sweep import grid


def write_results(root: str, plot_cells: Sequence[str] = ()) -> list[str]:
    """Collects the finished cells into tables and plots; returns the files written."""
    rows = results.collect(root)
    if not rows:
        logging.warning("no finished cell in %s yet; no results written", root)
        return []
    summary = results.aggregate(rows)
    written = [results.write_csv(rows, os.path.join(root, "results.csv")),
               results.write_csv(summary, os.path.join(root, "results_summary.csv")),
               files.write_text(os.path.join(root, "results.md"),
                                results.markdown_report(rows, summary))]
    directory = os.path.join(root, "plots")
    written += plots.plot_accuracy_vs_sparsity(
        summary, os.path.join(directory, "accuracy_vs_sparsity_{method}.png")).values()
    written += _landscape_overlays(root, rows, directory)
    reports = []
    for name in plot_cells:
        report = os.path.join(grid.cell_dir(root, name), files.PRUNING_REPORT)
        if not os.path.exists(report):
            logging.warning("no density plot for %s: it has no %s (not pruned yet)", name,
                            files.PRUNING_REPORT)
            continue
        written.append(plots.plot_layer_densities(
            [report], os.path.join(directory, f"layer_density_{name}.png")))
        reports.append(report)
    if len(reports) > 1:  # the chosen cells side by side
        written.append(plots.plot_layer_densities(
            reports, os.path.join(directory, "layer_density.png")))
    return written


def _landscape_overlays(root: str, rows, directory: str) -> list[str]:
    """Overlays of the first seed's 1-D landscapes, one per (method, sparsity).

    Every dense cell (of any method) is drawn in each overlay, so a pruned cell
    is seen against the dense network with and without self-distillation.
    """
    with_landscape = [r for r in rows if r["landscape_sharpness"] is not None]
    if not with_landscape:
        return []
    seed = min(r["seed"] for r in with_landscape)
    first = [r for r in with_landscape if r["seed"] == seed]
    dense = [r for r in first if r["scorer"] == grid.DENSE]
    groups = sorted({(r["method"], r["sparsity"]) for r in first if r["scorer"] != grid.DENSE})
    written = []
    for method, sparsity in groups or [(None, None)]:
        chosen = dense + [r for r in first if r["scorer"] != grid.DENSE and
                          r["method"] == method and r["sparsity"] == sparsity]
        curves = {f"{r['scorer']} + {r['method']}": landscape_stage.read_landscape(
            grid.cell_dir(root, r["cell"])) for r in chosen}
        name = "landscape_dense.png" if method is None else \
            f"landscape_{method}_s{sparsity:g}.png"
        title = f"seed {seed}" if method is None else \
            f"{method}, sparsity {100 * sparsity:g} %, seed {seed}"
        written.append(plots.plot_landscape_overlay(curves, os.path.join(directory, name),
                                                    title=title))
    return written
