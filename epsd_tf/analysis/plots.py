"""PNG plots of loss landscapes (Li et al., NeurIPS 2018, Figs. 1-D curve / 2-D contour),
and an overlay of several runs' 1-D curves.

Figures are drawn on `matplotlib.figure.Figure` objects with the Agg canvas, so
no pyplot global state or display backend is touched (safe on headless
machines and in tests).
"""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _check_result(result: dict, keys: tuple[str, ...], kind: str) -> None:
    missing = [key for key in keys if key not in result]
    if missing:
        raise ValueError(f"{kind} result is missing {missing}; pass the dict returned by "
                         f"landscape_{kind}()")


def _save(figure: Figure, path: str) -> str:
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
    return _save(figure, path)


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
    return _save(figure, path)


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
    return _save(figure, path)
