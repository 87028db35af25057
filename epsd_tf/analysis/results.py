"""Result tables and plots of a sweep: the shape of the EPSD paper's comparisons.

Chen et al., "EPSD: Early Pruning with Self-Distillation" (AAAI 2024) compare
pruning criteria (EPSD against SNIP, GraSP, SynFlow, ProsPr, random, the
"Simple Combination" baselines) under each self-distillation method, at the
early-pruning sparsities (90 %, 95 %, 98 %, ...), as test accuracy averaged over
seeds. These pure functions turn a sweep directory into those tables and plots.

A sweep directory (written by `epsd_tf.sweep`, `tools/sweep.py`) holds one directory per cell:

  <root>/cells/<cell>/cell.json            {"name", "scorer", "method", "sparsity", "seed"}
  <root>/cells/<cell>/metrics.json         the run's metrics (present once finished)
  <root>/cells/<cell>/pruning_report.json  per-layer report (pruned cells), or
  <root>/cells/<cell>/pruning_summary.json the same without score histograms
                                           (a committed study cell, `pruning_summary`)

A dense cell has `scorer == "dense"` and `sparsity == 0.0`.

Aggregation reports the mean and the *sample* standard deviation (ddof=1) over
the seeds of a (scorer, method, sparsity) group, with `n` the number of seeds;
with one seed the std is None (a single run has no spread estimate).
"""

from __future__ import annotations

import csv
import io
import math
import os
from typing import Iterable, Mapping, Sequence

import numpy as np
from absl import logging

from epsd_tf import files

DENSE = "dense"
CELL_FILE = "cell.json"
METRICS_FILE = files.METRICS
PRUNING_REPORT_FILE = files.PRUNING_REPORT
# What a committed study cell keeps of the report (`pruning_summary`).
PRUNING_SUMMARY_FILE = "pruning_summary.json"
GROUP_FIELDS = ("scorer", "method", "sparsity")
# The numeric fields of a collected row that `aggregate` averages over seeds.
NUMERIC_FIELDS = ("test_accuracy", "test_loss", "test_ece", "achieved_sparsity",
                  "trainable_sparsity", "mean_jsv_init", "mean_jsv_trained",
                  "landscape_sharpness", "floor_layers", "classifier_density",
                  "pruning_seconds", "training_seconds", "total_seconds")


def floor_layers(report: Mapping) -> int:
    """Pruned layers left with no more weights than the per-layer floor.

    The floor is `ceil(min_density · n)` of the report's settings; without a
    floor (min_density 0) these are the empty layers. A global ranking that
    starves a layer shows up here: the layer kept only what the floor forced.
    """
    min_density = float((report.get("settings") or {}).get("min_density") or 0.0)
    return sum(1 for layer in report["layers"] if layer.get("masked", True) and
               layer["kept"] <= math.ceil(min_density * layer["parameters"] - 1e-9))


def classifier_density(report: Mapping) -> float:
    """The fraction of the output layer's weights kept: the report's last layer.

    The model zoo's networks end with their classifier (`logits`), and a
    report lists layers in model order; a layer kept dense (`keep_dense`)
    counts as 1.0. At high sparsity global rankings can starve it.
    """
    last = report["layers"][-1]
    return last["kept"] / last["parameters"] if last["parameters"] else 1.0


def pruning_summary(report: Mapping) -> dict:
    """A pruning report without its per-layer score histograms (a few kB instead of ~45).

    Keeps the settings, totals, target and per layer its name, shape, counts,
    density and score statistics: enough for `floor_layers` and
    `plots.plot_layer_densities`, which read it like the full report.
    """
    layers = [{k: v for k, v in layer.items() if k != "score_histogram"}
              for layer in report["layers"]]
    return {**{k: v for k, v in report.items() if k != "layers"}, "layers": layers}


def pruning_report_path(cell_dir: str) -> str | None:
    """The cell's `pruning_report.json`, else its `pruning_summary.json`, else None (dense)."""
    for name in (PRUNING_REPORT_FILE, PRUNING_SUMMARY_FILE):
        if os.path.isfile(os.path.join(cell_dir, name)):
            return os.path.join(cell_dir, name)
    return None


def _row(cell: Mapping, metrics: Mapping, path: str, report: Mapping | None = None) -> dict:
    """One collected row from a cell's description and its metrics."""
    if not isinstance(metrics.get("test"), Mapping) or "accuracy" not in metrics["test"]:
        raise ValueError(f"{path} has no test accuracy (keys: {sorted(metrics)}); it is not "
                         "the metrics.json of a finished tools/run.py run")
    pruning = metrics.get("pruning") or {}
    # The sweep applies the cell's bindings last; a mismatch means a gin file or
    # binding overrode the grid, and the row would be filed under the wrong cell.
    if cell["method"] != metrics.get("method"):
        raise ValueError(f"{path}: cell method {cell['method']!r} but the run used "
                         f"{metrics.get('method')!r}")
    scorer = pruning.get("scorer", DENSE)
    if cell["scorer"] != scorer:
        raise ValueError(f"{path}: cell scorer {cell['scorer']!r} but the run used {scorer!r}")
    if cell["scorer"] != DENSE and not np.isclose(pruning["target_sparsity"], cell["sparsity"]):
        raise ValueError(f"{path}: cell sparsity {cell['sparsity']} but the run pruned to "
                         f"{pruning['target_sparsity']}")
    test = metrics["test"]
    seconds = metrics.get("seconds", {})
    jsv = metrics.get("mean_jsv") or {}
    landscape = metrics.get("landscape") or {}
    return {
        "cell": cell["name"], "scorer": cell["scorer"], "method": cell["method"],
        "sparsity": float(cell["sparsity"]), "seed": int(cell["seed"]),
        "test_accuracy": test["accuracy"], "test_loss": test.get("loss"),
        "test_ece": test.get("ece"),
        # Over the prunable pool the target refers to; 0 for a dense network.
        "achieved_sparsity": pruning.get("prunable_sparsity", 0.0),
        # Zeros among all trainable weights (biases and BN included) after training.
        "trainable_sparsity": metrics.get("parameters", {}).get("sparsity_trainable"),
        "mean_jsv_init": (jsv.get("init") or {}).get("mean"),
        "mean_jsv_trained": (jsv.get("trained") or {}).get("mean"),
        # Loss rise at ±radius/2 along the run's 1-D landscape (None unless measured).
        "landscape_sharpness": landscape.get("sharpness_half"),
        "floor_layers": floor_layers(report) if report else None,
        "classifier_density": classifier_density(report) if report else None,
        # The pruning rounds actually used (a scorer's default included: SynFlow 100).
        "rounds": (report.get("settings") or {}).get("rounds") if report else None,
        "pruning_seconds": seconds.get("pruning"),
        "training_seconds": seconds.get("training"),
        "total_seconds": seconds.get("total"),
        "epochs": metrics.get("epochs"),
    }


def collect(root: str) -> list[dict]:
    """One row per finished cell of the sweep in `root`, sorted by cell name.

    Cells without `metrics.json` are unfinished and left out (logged).

    Returns:
        Rows with `cell, scorer, method, sparsity, seed`, the test metrics
        (`test_accuracy, test_loss, test_ece`), `achieved_sparsity` (prunable
        pool), `trainable_sparsity`, `mean_jsv_init`/`mean_jsv_trained` (None
        unless the run measured Mean-JSV), `landscape_sharpness` (None unless
        the run had the landscape stage), `floor_layers` and
        `classifier_density` (see those functions; None for dense cells),
        `rounds` (the pruning rounds the run used; None for dense cells),
        `pruning_seconds, training_seconds,
        total_seconds, epochs`.

    Raises:
        FileNotFoundError: `root/cells` does not exist.
        ValueError: a metrics file is not a finished run's, or disagrees with
            its cell (method, scorer or sparsity).
    """
    cells_dir = os.path.join(root, "cells")
    if not os.path.isdir(cells_dir):
        raise FileNotFoundError(f"{cells_dir!r} does not exist; {root!r} is not a sweep "
                                "directory written by tools/sweep.py")
    rows, unfinished = [], []
    for name in sorted(os.listdir(cells_dir)):
        cell_path = os.path.join(cells_dir, name, CELL_FILE)
        metrics_path = os.path.join(cells_dir, name, METRICS_FILE)
        if not os.path.isfile(cell_path):
            logging.warning("ignoring %s: no %s", os.path.join(cells_dir, name), CELL_FILE)
        elif not files.is_finished(os.path.join(cells_dir, name)):
            unfinished.append(name)
        else:
            report_path = pruning_report_path(os.path.join(cells_dir, name))
            report = files.read_json(report_path) if report_path else None
            rows.append(_row(files.read_json(cell_path), files.read_json(metrics_path),
                             metrics_path, report))
    if unfinished:
        logging.info("%d unfinished cells left out of the results: %s", len(unfinished),
                     unfinished)
    return rows


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    array = np.asarray(values, np.float64)
    std = float(np.std(array, ddof=1)) if len(array) >= 2 else None
    return float(np.mean(array)), std


def aggregate(rows: Iterable[Mapping],
              fields: Sequence[str] = NUMERIC_FIELDS) -> list[dict]:
    """Mean and sample std (ddof=1) over seeds per (scorer, method, sparsity).

    Args:
        rows: rows of `collect`.
        fields: numeric fields to aggregate. A field's mean/std use the rows
            where it is not None (None when no row has it).

    Returns:
        One row per group, sorted by method, scorer (dense first), sparsity:
        `scorer, method, sparsity, n` (number of seeds), `seeds` (sorted list),
        and `<field>_mean`, `<field>_std` for each field; `_std` is None when
        fewer than two values exist.

    Raises:
        ValueError: two rows of a group have the same seed.
    """
    groups: dict[tuple, list[Mapping]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in GROUP_FIELDS), []).append(row)
    result = []
    for key, members in groups.items():
        seeds = sorted(int(row["seed"]) for row in members)
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"group {dict(zip(GROUP_FIELDS, key))} has repeated seeds "
                             f"{seeds} (cells {[row.get('cell') for row in members]})")
        out = dict(zip(GROUP_FIELDS, key), n=len(members), seeds=seeds)
        for field in fields:
            values = [float(row[field]) for row in members if row.get(field) is not None]
            out[f"{field}_mean"], out[f"{field}_std"] = _mean_std(values)
        result.append(out)
    return sorted(result, key=lambda r: (r["method"], r["scorer"] != DENSE, r["scorer"],
                                         r["sparsity"]))


def write_csv(rows: Sequence[Mapping], path: str) -> str:
    """Writes rows (columns in order of first appearance) to a CSV file atomically; returns path.

    None is written as an empty field and lists as space-separated values.
    """
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(row.get(k)) for k in columns})
    return files.write_text(path, text.getvalue())


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return value


def _sparsity_label(sparsity: float) -> str:
    return f"{100 * sparsity:g} %"


def markdown_table(aggregated: Sequence[Mapping], field: str = "test_accuracy",
                   percent: bool = True, digits: int = 2) -> str:
    """The paper's table shape: one row per (method, scorer), one column per sparsity.

    Entries are `mean ± std` (sample std, ddof=1) of `field` over seeds, in %
    when `percent`; a group with one seed shows the mean alone; `–` marks a
    combination that was not run. A note under the table gives `n`; when
    groups have different `n`, each entry carries its own `(n=..)`.

    Args:
        aggregated: rows of `aggregate`.
        field: the aggregated field, e.g. `"test_accuracy"` or `"mean_jsv_init"`.
        percent: multiply by 100 (for accuracies).
        digits: decimals shown.

    Raises:
        ValueError: no rows, or the rows have no `<field>_mean`.
    """
    if not aggregated:
        raise ValueError("no aggregated rows to tabulate (did any cell finish?)")
    if f"{field}_mean" not in aggregated[0]:
        raise ValueError(f"rows have no {field}_mean; aggregated fields: "
                         f"{sorted(k[:-5] for k in aggregated[0] if k.endswith('_mean'))}")
    scale = 100.0 if percent else 1.0
    sparsities = sorted({row["sparsity"] for row in aggregated})
    counts = sorted({row["n"] for row in aggregated})
    entries: dict[tuple, dict] = {}
    for row in aggregated:
        entries.setdefault((row["method"], row["scorer"]), {})[row["sparsity"]] = row

    def entry(row) -> str:
        mean, std = row[f"{field}_mean"], row[f"{field}_std"]
        if mean is None:
            return "–"
        text = f"{scale * mean:.{digits}f}"
        if std is not None:
            text += f" ± {scale * std:.{digits}f}"
        return text + (f" (n={row['n']})" if len(counts) > 1 else "")

    lines = ["| method | scorer | " + " | ".join(map(_sparsity_label, sparsities)) + " |",
             "|---|---|" + "---:|" * len(sparsities)]
    for (method, scorer), by_sparsity in entries.items():  # `aggregate`'s order
        cells = [entry(by_sparsity[s]) if s in by_sparsity else "–" for s in sparsities]
        lines.append(f"| {method} | {scorer} | " + " | ".join(cells) + " |")
    unit = " (%)" if percent else ""
    seeds = (f"n = {counts[0]} seed{'s' if counts[0] > 1 else ''}" if len(counts) == 1
             else "n seeds per entry")
    lines += ["", f"{field}{unit}: mean ± sample std (ddof=1) over {seeds}; columns are "
              "sparsity (fraction of prunable weights removed); dense = unpruned."]
    return "\n".join(lines) + "\n"


def markdown_report(rows: Sequence[Mapping], aggregated: Sequence[Mapping]) -> str:
    """The `results.md` of a sweep: test accuracy, and every other measured table.

    Mean-JSV at init, layers left at the per-layer floor and loss-landscape
    sharpness each get a table when any row measured them.
    """
    text = "# Sweep results\n\n## Test accuracy\n\n" + markdown_table(aggregated)
    if any(row["mean_jsv_init"] is not None for row in rows):
        text += ("\n## Mean-JSV at initialisation\n\n" +
                 markdown_table(aggregated, "mean_jsv_init", percent=False, digits=3))
    if any(row["floor_layers"] is not None for row in rows):
        text += ("\n## Layers left at the per-layer floor (min_density; empty without one)\n\n"
                 + markdown_table(aggregated, "floor_layers", percent=False, digits=1))
    if any(row["landscape_sharpness"] is not None for row in rows):
        text += ("\n## Loss-landscape sharpness (loss rise at ±radius/2)\n\n" +
                 markdown_table(aggregated, "landscape_sharpness", percent=False, digits=3))
    return text
