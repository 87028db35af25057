"""`loss_landscape`: the loss-landscape analysis as a stage of `run`.

`run.landscape = @loss_landscape` (gin) makes every `tools/run.py` run — and so
every `tools/sweep.py` cell — draw the 1-D (optionally 2-D) filter-normalised
landscape of its trained network on the test set, write it to
`<workdir>/landscape/` and put a summary in `metrics.json`. The EPSD paper
(METHOD.md §5) uses these landscapes to show that self-distillation leaves the
sparse network in a flatter region; `tools/sweep.py` overlays the cells' curves.

Files written (atomically):

  landscape.json     {"alphas", "loss", "accuracy"} (+ "2d": {...}) and settings
  landscape_1d.png   loss and accuracy along alpha
  landscape_2d.png   loss contours (only when `points_2d > 0`)
"""

from __future__ import annotations

import os

import keras
import numpy as np

from epsd_tf import files
from epsd_tf.analysis import landscape as landscape_lib
from epsd_tf.analysis import plots

RESULT_FILE = "landscape.json"


def _coordinates(points: int, radius: float) -> np.ndarray:
    return np.linspace(-radius, radius, points)


def sharpness(result: dict, offset: float) -> float:
    """Mean loss rise `(L(-offset) + L(+offset)) / 2 − L(0)` along a 1-D landscape.

    Interpolated linearly between the grid's alphas; a flatter minimum gives a
    smaller value. `offset` must lie inside the grid.
    """
    alphas, loss = np.asarray(result["alphas"]), np.asarray(result["loss"])
    if not (alphas[0] <= -offset and offset <= alphas[-1]):
        raise ValueError(f"offset {offset} lies outside the alphas [{alphas[0]}, {alphas[-1]}]")
    side = np.interp([-offset, offset], alphas, loss)
    return float(np.mean(side) - np.interp(0.0, alphas, loss))


def loss_landscape(model: keras.Model, dataset, directory: str, *, points: int = 21,
                   radius: float = 1.0, num_batches: int | None = 8, seed: int = 0,
                   points_2d: int = 0) -> dict:
    """Computes, saves and plots the loss landscape of a trained model.

    Args:
        model: the trained Keras model (masks kept: pruned weights stay 0 along
            the directions, see `landscape.random_direction`).
        dataset: finite `(images, labels)` batches, e.g. the test split.
        directory: output directory (created).
        points: odd number of alphas in `[-radius, radius]` (includes 0).
        radius: extent of the grid, in units of the filter-normalised direction.
        num_batches: evaluate on the first `num_batches` batches (None: all).
        seed: seed of the direction (the 2-D plane uses `seed` and `seed + 1`).
        points_2d: if > 0, also a `points_2d × points_2d` plane (odd).

    Returns:
        Summary for `metrics.json`: `loss_at_0`, `accuracy_at_0`, `sharpness_half`
        (loss rise at ±radius/2), `sharpness_full` (at ±radius), `max_loss`, and
        the settings.

    Raises:
        ValueError: bad `points`, `points_2d` or `radius`.
    """
    if points < 3 or points % 2 == 0:
        raise ValueError(f"points must be odd and >= 3 (so 0 is on the grid), got {points!r}")
    if points_2d and (points_2d < 3 or points_2d % 2 == 0):
        raise ValueError(f"points_2d must be 0 or odd and >= 3, got {points_2d!r}")
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius!r}")
    direction = landscape_lib.random_direction(model, seed)
    result = landscape_lib.landscape_1d(model, dataset, direction,
                                        _coordinates(points, radius), num_batches=num_batches)
    saved = {key: np.asarray(value).tolist() for key, value in result.items()}
    os.makedirs(directory, exist_ok=True)
    plots.plot_landscape_1d(result, os.path.join(directory, "landscape_1d.png"),
                            title=f"1-D loss landscape (seed {seed})")
    if points_2d:
        grid = _coordinates(points_2d, radius)
        plane = landscape_lib.landscape_2d(
            model, dataset, direction, landscape_lib.random_direction(model, seed + 1),
            grid, grid, num_batches=num_batches)
        saved["2d"] = {key: np.asarray(value).tolist() for key, value in plane.items()}
        plots.plot_landscape_2d(plane, os.path.join(directory, "landscape_2d.png"),
                                title=f"2-D loss landscape (seeds {seed}, {seed + 1})")
    settings = {"points": points, "radius": radius, "num_batches": num_batches,
                "seed": seed, "points_2d": points_2d}
    saved["settings"] = settings
    files.write_json(os.path.join(directory, RESULT_FILE), saved, sort_keys=False)
    middle = points // 2
    return {"loss_at_0": float(result["loss"][middle]),
            "accuracy_at_0": float(result["accuracy"][middle]),
            "sharpness_half": sharpness(result, radius / 2),
            "sharpness_full": sharpness(result, radius),
            "max_loss": float(np.max(result["loss"])), **settings}


def read_landscape(workdir_or_directory: str) -> dict:
    """Reads `landscape.json` from a run's workdir or its `landscape/` directory."""
    for path in (os.path.join(workdir_or_directory, files.LANDSCAPE, RESULT_FILE),
                 os.path.join(workdir_or_directory, RESULT_FILE)):
        if os.path.isfile(path):
            return files.read_json(path)
    raise FileNotFoundError(f"no {RESULT_FILE} under {workdir_or_directory!r}; run with "
                            "run.landscape = @loss_landscape")
