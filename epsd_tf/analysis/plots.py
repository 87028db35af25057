"""Every PNG plot of the library: loss landscapes (Li et al., NeurIPS 2018, Figs.
1-D curve / 2-D contour) and an overlay of several runs' 1-D curves; the sweep
plots in the shape of the EPSD paper (Chen et al., AAAI 2024): test accuracy
against sparsity per method, and per-layer densities of pruning reports.

Figures are drawn on `matplotlib.figure.Figure` objects with the Agg canvas, so
no pyplot global state or display backend is touched (safe on headless
machines and in tests).
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from epsd_tf import files
from epsd_tf.analysis import stats
from epsd_tf.analysis.results import DENSE


def _check_result(result: dict, keys: tuple[str, ...], kind: str) -> None:
    missing = [key for key in keys if key not in result]
    if missing:
        raise ValueError(f"{kind} result is missing {missing}; pass the dict returned by "
                         f"landscape_{kind}()")


def save(figure: Figure, path: str) -> str:
    """Writes `figure` as a PNG to `path` (directories created); returns `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png", dpi=120, bbox_inches="tight")
    return path


def plot_landscape_1d(result: dict, path: str, *, title: str = "") -> str:
    """Plots loss (left axis) and accuracy (right axis) against alpha.

    Args:
        result: the dict returned by `landscape_1d`.
        path: output PNG path; parent directories are created.
        title: optional figure title.

    Returns:
        `path`.
    """
    _check_result(result, ("alphas", "loss", "accuracy"), "1d")
    figure = Figure(figsize=(5, 3.5))
    axis = figure.subplots()
    axis.plot(result["alphas"], result["loss"], color="tab:blue", label="loss")
    axis.set_xlabel("alpha (filter-normalised direction)")
    axis.set_ylabel("cross-entropy loss", color="tab:blue")
    accuracy_axis = axis.twinx()
    accuracy_axis.plot(result["alphas"], 100 * np.asarray(result["accuracy"]),
                       color="tab:red", linestyle="--", label="accuracy")
    accuracy_axis.set_ylabel("accuracy (%)", color="tab:red")
    if title:
        axis.set_title(title)
    return save(figure, path)


def plot_landscape_2d(result: dict, path: str, *, title: str = "", levels: int = 20) -> str:
    """Contour plot of the loss over the (alpha, beta) plane.

    Args:
        result: the dict returned by `landscape_2d`.
        path: output PNG path; parent directories are created.
        title: optional figure title.
        levels: number of contour levels.

    Returns:
        `path`.
    """
    _check_result(result, ("alphas", "betas", "loss"), "2d")
    loss = np.asarray(result["loss"])  # [A, B]
    if loss.shape != (len(result["alphas"]), len(result["betas"])):
        raise ValueError(f"2d result loss has shape {loss.shape}, expected "
                         f"({len(result['alphas'])}, {len(result['betas'])})")
    figure = Figure(figsize=(4.5, 4))
    axis = figure.subplots()
    # contour wants Z[y, x]: rows follow beta, columns follow alpha.
    contours = axis.contour(result["alphas"], result["betas"], loss.T, levels=levels)
    axis.clabel(contours, inline=True, fontsize=7)
    axis.plot([0.0], [0.0], "k+", markersize=10)  # the trained weights
    axis.set_xlabel("alpha")
    axis.set_ylabel("beta")
    if title:
        axis.set_title(title)
    return save(figure, path)


def plot_landscape_overlay(curves: Mapping[str, Mapping], path: str, *, title: str = "") -> str:
    """Overlays 1-D loss landscapes (e.g. several cells' `landscape.json`).

    Args:
        curves: `{label: {"alphas": [...], "loss": [...]}}`.
        path: output PNG path; directories are created.
        title: optional figure title.

    Returns:
        `path`.

    Raises:
        ValueError: no curves, or a curve without `alphas`/`loss` of equal length.
    """
    if not curves:
        raise ValueError("no landscapes to overlay")
    figure = Figure(figsize=(5.5, 4))
    axis = figure.subplots()
    for label, curve in curves.items():
        if "alphas" not in curve or "loss" not in curve or \
                len(curve["alphas"]) != len(curve["loss"]):
            raise ValueError(f"landscape {label!r} needs equal-length 'alphas' and 'loss'")
        axis.plot(curve["alphas"], curve["loss"], label=label)
    axis.set_xlabel("alpha (filter-normalised direction)")
    axis.set_ylabel("test cross-entropy loss")
    axis.set_yscale("log")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    if title:
        axis.set_title(title)
    return save(figure, path)


def plot_accuracy_vs_sparsity(aggregated: Sequence[Mapping], path_template: str, *,
                              zoom: float | None = None) -> dict:
    """One PNG per method: test accuracy against sparsity, one line per scorer.

    Error bars are the sample std over seeds; the dense network of that method
    is a dashed horizontal line with a ±std band, dense networks of the other
    methods dotted grey lines. The x axis is the density left (100 % −
    sparsity) on a log scale, reversed, with ticks named by sparsity: the
    paper's grid (36 ... 98 %) is roughly geometric in density, so 90, 95 and
    98 % are as far apart as 36, 59 and 79 %. A method run only on dense cells
    gets no plot of its own (unless no method has pruned cells).

    Args:
        aggregated: rows of `aggregate`.
        path_template: output path containing `{method}`, e.g.
            `"plots/accuracy_vs_sparsity_{method}.png"`; directories are created.
        zoom: with a value (points), a second panel shows only the `zoom`
            points below the best mean (dense included), so that differences
            of a point stay visible beside a collapse; means below it are
            arrows at its lower edge. Drawn only where some mean is below it.

    Returns:
        `{method: path}` of the written PNGs.

    Raises:
        ValueError: the template lacks `{method}`, there are no rows, or
            `zoom` is not positive.
    """
    if "{method}" not in path_template:
        raise ValueError(f"path_template {path_template!r} must contain '{{method}}'")
    if not aggregated:
        raise ValueError("no aggregated rows to plot (did any cell finish?)")
    paths = {}
    # A method with only a dense row gets no plot of its own: it is drawn in the others.
    methods = sorted({r["method"] for r in aggregated if r["scorer"] != DENSE}) or \
        sorted({r["method"] for r in aggregated})
    for method in methods:
        figure = accuracy_figure(aggregated, method, zoom=zoom)
        paths[method] = save(figure, path_template.format(method=method))
    return paths


def accuracy_figure(aggregated: Sequence[Mapping], method: str, *,
                    zoom: float | None = None) -> Figure:
    """The figure `plot_accuracy_vs_sparsity` saves for one method (rows of it needed)."""
    if zoom is not None and not zoom > 0:
        raise ValueError(f"zoom must be > 0, got {zoom!r}")
    rows = [r for r in aggregated if r["method"] == method]
    if not rows:
        known = sorted({r["method"] for r in aggregated})
        raise ValueError(f"no rows of method {method!r} to plot (the rows have {known})")
    dense_rows = sorted((r for r in aggregated if r["scorer"] == DENSE),
                        key=lambda r: r["method"] != method)
    scorers = sorted({r["scorer"] for r in rows if r["scorer"] != DENSE})
    pruned = sorted({r["sparsity"] for r in rows if r["scorer"] != DENSE})
    means = [100 * r["test_accuracy_mean"] for r in [*rows, *dense_rows]]
    best = max(means)
    if zoom is not None and min(means) >= best - zoom:
        zoom = None  # every mean within the zoomed range already: the full panel is it
    figure = Figure(figsize=(5.5 if zoom is None else 10, 4))
    axes = figure.subplots(1, 1 if zoom is None else 2, squeeze=False)[0]
    for axis, limit in zip(axes, (None, zoom)):
        bottom = None if limit is None else best - limit
        for index, scorer in enumerate(scorers):
            points = sorted((r for r in rows if r["scorer"] == scorer),
                            key=lambda r: r["sparsity"])
            x = [100 * (1 - r["sparsity"]) for r in points]
            y = [100 * r["test_accuracy_mean"] for r in points]
            color = f"C{index % 10}"
            axis.errorbar(x, y, yerr=[100 * (r["test_accuracy_std"] or 0.0) for r in points],
                          marker="o", capsize=3, label=scorer, color=color)
            # A mean under the zoomed range: an arrow at its lower edge, each scorer's
            # a little apart from the others' so that arrows at one sparsity do not hide.
            shift = 1.04 ** (index - (len(scorers) - 1) / 2)
            below = [(xi * shift, bottom) for xi, yi in zip(x, y)
                     if bottom is not None and yi < bottom]
            if below:
                axis.plot(*zip(*below), "v", color=color, markersize=9, clip_on=False)
        for row in dense_rows:
            own = row["method"] == method
            mean, std = 100 * row["test_accuracy_mean"], 100 * (row["test_accuracy_std"] or 0)
            axis.axhline(mean, color="black" if own else "gray",
                         linestyle="--" if own else ":",
                         label="dense" if own else f"dense, method {row['method']}")
            if std:
                axis.axhspan(mean - std, mean + std, color="black" if own else "gray",
                             alpha=0.1)
        if pruned:
            axis.set_xscale("log")
            axis.set_xticks([100 * (1 - s) for s in pruned])
            axis.set_xticklabels([f"{100 * s:g}" for s in pruned])
            axis.xaxis.set_minor_locator(NullLocator())
            axis.set_xlim(100 * (1 - pruned[0]) * 1.25, 100 * (1 - pruned[-1]) / 1.25)
        axis.set_xlabel("sparsity (% of prunable weights removed; log density)")
        axis.grid(alpha=0.3)
        if limit is not None:
            axis.set_ylim(bottom, best + 0.1 * limit)
            axis.set_title(f"within {limit:g} pt of the best (arrows: below)")
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].set_title(f"method: {method}")
    axes[0].legend(fontsize=8)
    return figure


def plot_layer_densities(report_paths: Sequence[str], path: str,
                         labels: Sequence[str] | None = None) -> str:
    """Bar chart of the kept fraction (density) of every prunable weight.

    One group of bars per weight, one bar per pruning report (e.g. per cell),
    so the layer-wise allocation of different criteria can be compared.

    Args:
        report_paths: `pruning_report.json` files of the same network.
        path: output PNG path; directories are created.
        labels: legend labels; default the name of each report's directory.

    Returns:
        `path`.

    Raises:
        FileNotFoundError: a report does not exist.
        ValueError: no reports, a report without `layers`, reports of
            different networks, or a wrong number of labels.
    """
    if not report_paths:
        raise ValueError("no pruning reports given")
    if labels is None:
        labels = [os.path.basename(os.path.dirname(os.path.abspath(p))) for p in report_paths]
    if len(labels) != len(report_paths):
        raise ValueError(f"{len(labels)} labels for {len(report_paths)} reports")
    names, densities = None, []
    for report_path in report_paths:
        if not os.path.isfile(report_path):
            raise FileNotFoundError(f"pruning report {report_path!r} does not exist")
        layers = files.read_json(report_path).get("layers")
        if not layers:
            raise ValueError(f"{report_path} has no 'layers'; expected a pruning_report.json")
        these = [layer["name"] for layer in layers]
        if names is not None and these != names:
            raise ValueError(f"{report_path} reports weights {these}, but "
                             f"{report_paths[0]} reports {names}: different networks")
        names = these
        densities.append([layer["kept"] / max(layer["parameters"], 1) for layer in layers])
    width = 0.8 / len(report_paths)
    positions = np.arange(len(names))
    figure = Figure(figsize=(max(6.0, 0.35 * len(names) + 2), 4))
    axis = figure.subplots()
    for index, (label, values) in enumerate(zip(labels, densities)):
        axis.bar(positions + (index - (len(report_paths) - 1) / 2) * width, values, width,
                 label=label)
    axis.set_xticks(positions)
    axis.set_xticklabels(names, rotation=90, fontsize=7)
    axis.set_ylabel("density (kept fraction)")
    axis.set_ylim(0, 1.05)
    axis.legend(fontsize=8)
    return save(figure, path)


def plot_points(points: Sequence[Mapping], path: str, *, xlabel: str, ylabel: str,
                title: str = "") -> str:
    """Scatter of labelled points, one colour and legend entry per label.

    Args:
        points: `{"label", "x", "y"}` each (e.g. one cell: its classifier's
            density and its test accuracy, labelled by criterion).
        path: output PNG path; directories are created.
        xlabel, ylabel, title: the axes' labels and an optional title.

    Returns:
        `path`.

    Raises:
        ValueError: no points.
    """
    if not points:
        raise ValueError("no points to plot")
    figure = Figure(figsize=(6, 4))
    axis = figure.subplots()
    for label in sorted({p["label"] for p in points}):
        mine = [p for p in points if p["label"] == label]
        axis.plot([p["x"] for p in mine], [p["y"] for p in mine], "o", alpha=0.8, label=label)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    if title:
        axis.set_title(title)
    return save(figure, path)


def plot_paired_differences(records: Sequence[Mapping], path: str, *, title: str = "",
                            scale: float = 100.0, unit: str = "pt",
                            zoom: float | None = None) -> str:
    """Forest plot of paired differences: one row per comparison, mean with its interval.

    Args:
        records: `{"label", "mean", "low", "high"}` per comparison (e.g. EPSD −
            a baseline at one sparsity, `analysis.stats.paired_difference`);
            `low`/`high` None draws the mean alone.
        path: output PNG path; directories are created.
        title: optional figure title.
        scale, unit: the differences are drawn times `scale`, labelled `unit`.
        zoom: with a value, a second panel beside the first shows ±`zoom` (in
            `unit`), where small differences are readable when a few wide
            intervals set the first panel's scale; an interval running past
            it ends in an arrow, a mean past it is an arrowhead at the edge.

    Returns:
        `path`.

    Raises:
        ValueError: no records with a mean, or `zoom` not positive.
    """
    return save(paired_differences_figure(records, title=title, scale=scale, unit=unit,
                                          zoom=zoom), path)


def paired_differences_figure(records: Sequence[Mapping], *, title: str = "",
                              scale: float = 100.0, unit: str = "pt",
                              zoom: float | None = None) -> Figure:
    """The figure `plot_paired_differences` saves (its arguments but `path`)."""
    records = [r for r in records if r.get("mean") is not None]
    if not records:
        raise ValueError("no paired differences to plot")
    if zoom is not None and not zoom > 0:
        raise ValueError(f"zoom must be > 0, got {zoom!r}")
    width = 6 if zoom is None else 9
    figure = Figure(figsize=(width, 0.35 * len(records) + 1.2))
    axes = figure.subplots(1, 1 if zoom is None else 2, sharey=True, squeeze=False)[0]
    positions = np.arange(len(records))[::-1]
    for axis, limit in zip(axes, (None, zoom)):
        for y, record in zip(positions, records):
            _difference_row(axis, y, record, scale, limit)
        axis.axvline(0.0, color="black", linewidth=0.8)
        axis.grid(alpha=0.3, axis="x")
        if limit is not None:
            axis.set_xlim(-limit, limit)
            axis.set_xlabel(f"the same within ±{limit:g} {unit}")
            axis.set_title(f"within ±{limit:g} {unit}")
    axes[0].set_yticks(positions)
    axes[0].set_yticklabels([r["label"] for r in records], fontsize=7)
    axes[0].set_xlabel(f"difference ({unit}); 95 % t interval over matched seeds")
    if title:
        axes[0].set_title(title)
    return figure


def _difference_row(axis, y: float, record: Mapping, scale: float, limit: float | None):
    """One comparison: its interval and its mean (red where the interval excludes 0);
    with `limit`, clipped to ±limit, with arrows where something runs past it."""
    def clip(value):
        return value if limit is None else min(max(value, -limit), limit)

    mean = scale * record["mean"]
    real = record.get("low") is not None and stats.excludes_zero(record["low"], record["high"])
    color = "tab:red" if real else "tab:blue"
    if record.get("low") is not None:
        low, high = scale * record["low"], scale * record["high"]
        axis.plot([clip(low), clip(high)], [y, y], color="tab:blue")
        for end, marker in ((low, "<"), (high, ">")):
            if clip(end) != end:
                axis.plot([clip(end)], [y], marker, color="tab:blue", markersize=4)
    if clip(mean) == mean:
        axis.plot([mean], [y], "o", color=color)
    else:
        axis.plot([clip(mean)], [y], "<" if mean < 0 else ">", color=color, markersize=8)
