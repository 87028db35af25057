"""The committed study cells as rows, with what each cell's files say about it.

`analysis.results.collect` reads one sweep root; a study has one root per
family (`docs/results/study/<family>/cells/`). Each row gets, from the cell's
own committed files (never from the plan, so a row cannot be mislabelled):

* `family`, `arch` (`build.name` of its `config.gin`), `allocation`
  (`global`, `erk` or `uniform` from `prune_at_init.scope`/`layer_density`,
  plus `, <R> rounds` when `prune_at_init.rounds` is set above 1 and
  `, <layers> dense` for `prune_at_init.keep_dense`; it names only rounds the
  config sets, while the row's `rounds`, from `analysis.results`, are those the
  cell used, a scorer's default included: SynFlow 100),
* `landscape_run` (the cell ran the loss-landscape stage: its family re-runs
  cells of another family, so its accuracies are kept out of the main tables),
* the cost account of its `metrics.json` and the sweep's wall time
  (`cell_state.json`).
"""

from __future__ import annotations

import ast
import os

from epsd_tf import files
from epsd_tf.analysis import results
from epsd_tf.study import archive
from epsd_tf.sweep import grid

COST_FIELDS = ("scoring_pass_equivalents", "training_passes", "scoring_fraction",
               "ptd_over_epsd", "epsd_epoch_equivalents", "ptd_epoch_equivalents")
GROUP = ("arch", "allocation", "method", "scorer", "sparsity")


def _value(parameters: dict, key: str, default=None):
    text = parameters.get(key)
    return default if text is None else text.strip("'\"")


def allocation(parameters: dict) -> str:
    """The allocation label of a cell from its gin parameters (`archive.gin_parameters`)."""
    scope = _value(parameters, "prune_at_init.scope", "global")
    label = "global" if scope == "global" else _value(parameters, "prune_at_init.layer_density",
                                                       "uniform")
    rounds = _value(parameters, "prune_at_init.rounds", "None")
    if rounds not in ("None", "1"):
        label += f", {rounds} rounds"
    keep_dense = ast.literal_eval(parameters.get("prune_at_init.keep_dense", "()"))
    if keep_dense:
        names = (keep_dense,) if isinstance(keep_dense, str) else keep_dense
        label += f", {'+'.join(names)} dense"
    return label


def families(results_dir: str) -> list[str]:
    """The family directories under `results_dir` (those holding `cells/`)."""
    if not os.path.isdir(results_dir):
        return []
    return sorted(name for name in os.listdir(results_dir)
                  if os.path.isdir(os.path.join(results_dir, name, grid.CELLS)))


def load(results_dir: str) -> list[dict]:
    """One row per committed finished cell (`analysis.results.collect` rows + the above)."""
    rows = []
    for family in families(results_dir):
        root = os.path.join(results_dir, family)
        for row in results.collect(root):
            cell_dir = grid.cell_dir(root, row["cell"])
            with open(os.path.join(cell_dir, files.CONFIG)) as f:
                parameters = archive.gin_parameters(f.read())
            metrics = files.read_json(os.path.join(cell_dir, files.METRICS))
            cost = metrics.get("cost") or {}
            state_path = os.path.join(cell_dir, archive.CELL_STATE)
            state = files.read_json(state_path) if os.path.isfile(state_path) else {}
            row.update(
                family=family, key=f"{family}/{row['cell']}", directory=cell_dir,
                arch=_value(parameters, "build.name"),
                allocation=allocation(parameters),
                landscape_run=_value(parameters, "run.landscape", "None") != "None",
                wall_seconds=state.get("elapsed_total", state.get("elapsed")),
                attempts=state.get("attempts"),
                **{field: cost.get(field) for field in COST_FIELDS})
            rows.append(row)
    return rows


def matching(rows, **where) -> list[dict]:
    """The rows whose fields equal every `where` item."""
    return [row for row in rows if all(row.get(k) == v for k, v in where.items())]


def by_seed(rows, field: str = "test_accuracy") -> dict[int, float]:
    """`{seed: value}` of rows of one group (rows without the value are left out).

    Raises:
        ValueError: two rows have the same seed (two cells of one group).
    """
    values: dict[int, float] = {}
    for row in rows:
        if row["seed"] in values:
            raise ValueError(f"two committed cells of one group have seed {row['seed']}: "
                             f"{[r['key'] for r in rows if r['seed'] == row['seed']]}")
        if row.get(field) is not None:
            values[row["seed"]] = float(row[field])
    return values
