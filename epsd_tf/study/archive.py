"""The committed form of a study cell: its small result files, and how they travel.

A finished sweep cell (`<root>/<family>/cells/<cell>/`) holds models,
backups and TensorBoard events besides its results. What the study commits
(`docs/results/study/<family>/cells/<cell>/`) is only:

  cell.json            the grid axes (scorer, method, sparsity, seed)
  metrics.json         test metrics, Mean-JSV, parameter counts, cost, seconds
  config.gin           the exact gin config the run used
  operative_config.gin the parameters it actually read
  stages.json          each stage's result
  train_log.csv        per-epoch training and validation values
  cell_state.json      the sweep's entry: attempts, wall time, gin files and bindings
  pruning_summary.json the pruning report without its score histograms (pruned cells)
  landscape/landscape.json  the 1-D loss landscape (cells with that stage)

`collect` also appends to `sessions.json` (when, `--note`: hardware and
session, which cells). `pack` writes these files of every finished cell into one `.tar.gz` (on the
GPU machine, whose `$OUT` brings back few files); `collect` copies them from
a sweep root, a study root or such a tarball into the committed tree, and
refuses, before copying anything, a cell that is not in the plan, was run
with another configuration than the plan's, or whose config differs from
the family's committed cells; `restore` puts the committed cells back into a
fresh sweep root, so that a sweep there skips them (a new device session
continues where the last stopped); `supersede` takes committed cells that a
code fix made wrong out of the study, into `superseded/<tag>/`, so that they
run again.

Unfinished cells travel too, whole, between device calls: `carry.py`.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
from typing import Callable, Mapping, Sequence

from absl import logging

from epsd_tf import files
from epsd_tf.analysis import results
from epsd_tf.study import plan as plan_lib
from epsd_tf.sweep import grid

CELL_STATE = "cell_state.json"  # the per-cell sweep entry (a sweep root may hold only
SWEEP_STATE = "sweep_state.json"  # the root's sweep_state.json: both are read)
COPIED = (results.CELL_FILE, files.METRICS, files.CONFIG, files.OPERATIVE_CONFIG, files.STAGES,
          files.TRAIN_LOG)
LANDSCAPE_FILE = os.path.join(files.LANDSCAPE, "landscape.json")
# One entry per collect that committed cells: when, the note given, which cells.
SESSIONS = "sessions.json"
# Every committed file is small; a larger one means something else slipped in.
MAX_FILE_BYTES = 256 * 1024
# A cell's test accuracy (10 000 images) and its last epoch's validation accuracy (6 000
# held-out training images) differed by at most 1.1 pt over the first 182 study cells. A
# wider gap means the evaluated network is not the one that trained: a resume once
# evaluated the pruned initial network (11.41 % against 51.78 % validation; 155e58a).
MAX_TEST_VALIDATION_GAP = 0.05
# Gin parameters that may differ between cells of one family: the grid axes
# (`grid.Cell.bindings`) and the progress output.
CELL_PARAMETERS = ("run.prune", "prune_at_init.scorer", "prune_at_init.sparsity", "run.method",
                   "run.seed", "load.seed", "run.verbose")


def gin_parameters(config_text: str) -> dict[str, str]:
    """`{"configurable.parameter": "value text"}` of a gin config (`config.gin`)."""
    parameters: dict[str, str] = {}
    last = None
    for line in config_text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.match(r"^([\w./]+)\s*=\s*(.*)$", line)
        if match:
            last = match.group(1)
            parameters[last] = match.group(2).strip()
        elif last is not None:  # a value continued over several lines
            parameters[last] += " " + line.strip()
    return parameters


def family_config(config_text: str) -> dict[str, str]:
    """The gin parameters every cell of a family shares (its config minus the grid axes)."""
    return {k: v for k, v in gin_parameters(config_text).items() if k not in CELL_PARAMETERS}


def _sweep_entry(cell_dir: str) -> dict | None:
    """The cell's sweep entry: its own `cell_state.json`, else the root's `sweep_state.json`."""
    path = os.path.join(cell_dir, CELL_STATE)
    if os.path.isfile(path):
        return files.read_json(path)
    root_state = os.path.join(os.path.dirname(os.path.dirname(cell_dir)), SWEEP_STATE)
    if os.path.isfile(root_state):
        return files.read_json(root_state).get("cells", {}).get(os.path.basename(cell_dir))
    return None


def small_files(cell_dir: str) -> dict[str, bytes]:
    """`{relative path: content}` of the committed form of a finished cell.

    Accepts a sweep's cell (full pruning report) or an already committed one.

    Raises:
        ValueError: the cell is not finished, lacks a file every cell has, or
            a file is larger than `MAX_FILE_BYTES`.
    """
    if not files.is_finished(cell_dir):
        raise ValueError(f"{cell_dir} is not a finished cell (no {files.METRICS})")
    out: dict[str, bytes] = {}
    for name in COPIED:
        path = os.path.join(cell_dir, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                out[name] = f.read()
    missing = [n for n in (results.CELL_FILE, files.METRICS, files.CONFIG) if n not in out]
    if missing:
        raise ValueError(f"{cell_dir} has no {missing}: not a cell written by tools/sweep.py")
    entry = _sweep_entry(cell_dir)
    if entry is not None:
        out[CELL_STATE] = _json_bytes(entry)
    report = os.path.join(cell_dir, files.PRUNING_REPORT)
    summary = os.path.join(cell_dir, results.PRUNING_SUMMARY_FILE)
    if os.path.isfile(report):
        out[results.PRUNING_SUMMARY_FILE] = _json_bytes(
            results.pruning_summary(files.read_json(report)))
    elif os.path.isfile(summary):
        with open(summary, "rb") as f:
            out[results.PRUNING_SUMMARY_FILE] = f.read()
    landscape = os.path.join(cell_dir, LANDSCAPE_FILE)
    if os.path.isfile(landscape):
        with open(landscape, "rb") as f:
            out[LANDSCAPE_FILE] = f.read()
    large = {name: len(data) for name, data in out.items() if len(data) > MAX_FILE_BYTES}
    if large:
        raise ValueError(f"{cell_dir}: {large} exceed {MAX_FILE_BYTES} bytes; the study "
                         "commits only small result files")
    return out


def _json_bytes(value) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()


def finished_cells(source: str) -> dict[str, str]:
    """`{"<family>/<cell>": cell directory}` of the finished cells under `source`.

    `source` is a study root (`runs/study`, holding `<family>/cells/`) or one
    family's sweep root (holding `cells/`; the family is its directory name).

    Raises:
        FileNotFoundError: `source` holds no `cells/` directory at either level.
    """
    if not family_roots(source):
        raise FileNotFoundError(f"{source!r} holds no cells/ directory: pass a study root "
                                f"(<root>/<family>/cells/) or a sweep root (<root>/cells/)")
    return {key: path for key, path in cell_dirs(source) if files.is_finished(path)}


def pack(source: str, tarball: str) -> list[str]:
    """Writes the committed form of every finished cell under `source` into `tarball`.

    Members are `<family>/cells/<cell>/<file>`; returns the cell keys packed.
    """
    cells = finished_cells(source)
    os.makedirs(os.path.dirname(os.path.abspath(tarball)), exist_ok=True)
    with tarfile.open(tarball, "w:gz") as tar:
        for key, cell_dir in cells.items():
            fam, name = key.split("/")
            for relative, data in sorted(small_files(cell_dir).items()):
                member = tarfile.TarInfo(os.path.join(fam, grid.CELLS, name, relative))
                member.size = len(data)
                member.mtime = int(os.path.getmtime(os.path.join(cell_dir, files.METRICS)))
                tar.addfile(member, io.BytesIO(data))
    return list(cells)


def _check(key: str, content: Mapping[str, bytes], destination: str, planned: Mapping,
           family_configs: dict[str, tuple[str, dict]]) -> str:
    """`"new"`, or `"same"` (committed already with this config); raises if it must not go in."""
    fam_name, name = key.split("/")
    if key not in planned:
        families = sorted({k.split("/")[0] for k in planned})
        raise ValueError(f"{key} is not a cell of the study plan (epsd_tf/study/plan.py); "
                         f"planned families: {families}")
    fam, cell = planned[key]
    entry = json.loads(content[CELL_STATE]) if CELL_STATE in content else None
    if entry is None or "config" not in entry:
        raise ValueError(f"{key} has no sweep entry ({CELL_STATE} or the root's "
                         f"{SWEEP_STATE}): run the plan's tools/sweep.py command")
    ran = {k: list(entry["config"].get(k, [])) for k in ("gin_files", "gin_bindings")}
    ran["gin_bindings"] = [b for b in ran["gin_bindings"] if not b.startswith("run.verbose")]
    expected = plan_lib.expected_config(fam, cell)
    if ran != expected:
        raise ValueError(f"{key} ran with {ran}, but the plan runs it with {expected}")
    _check_evaluated_what_trained(key, content)
    config_text = content[files.CONFIG].decode()
    shared = family_config(config_text)
    if fam_name in family_configs:
        other, other_shared = family_configs[fam_name]
        if shared != other_shared:
            diff = sorted(k for k in set(shared) | set(other_shared)
                          if shared.get(k) != other_shared.get(k))
            raise ValueError(f"{key}'s config differs from {other}'s (same family) in {diff}; "
                             "the family's cells must share one configuration")
    else:
        family_configs[fam_name] = (key, shared)
    committed_config = os.path.join(destination, fam_name, grid.CELLS, name, files.CONFIG)
    if os.path.isfile(committed_config):
        with open(committed_config) as f:
            if f.read() != config_text:
                raise ValueError(f"{key} is committed with another config.gin than the one "
                                 f"collected; delete {os.path.dirname(committed_config)} to "
                                 "replace it")
        return "same"
    return "new"


def _check_evaluated_what_trained(key: str, content: Mapping[str, bytes]) -> None:
    """Raises if the cell's test accuracy is far from its last validation accuracy."""
    log = content.get(files.TRAIN_LOG)
    rows = list(csv.DictReader(io.StringIO(log.decode()))) if log else []
    if not rows or not rows[-1].get("val_accuracy"):
        return
    test = json.loads(content[files.METRICS])["test"]["accuracy"]
    validation = float(rows[-1]["val_accuracy"])
    if abs(test - validation) > MAX_TEST_VALIDATION_GAP:
        raise ValueError(
            f"{key}: test accuracy {test:.2%} but {validation:.2%} on validation after its "
            f"last epoch (more than {MAX_TEST_VALIDATION_GAP:.0%} apart): the evaluated "
            "network is not the one that trained; run the cell again")


def _committed_family_configs(destination: str) -> dict[str, tuple[str, dict]]:
    """`{family: (first committed cell, its family config)}` of the committed tree."""
    configs = {}
    try:
        committed_cells = finished_cells(destination)
    except FileNotFoundError:  # nothing committed yet
        committed_cells = {}
    for key, cell_dir in committed_cells.items():
        fam = key.split("/")[0]
        if fam not in configs:
            with open(os.path.join(cell_dir, files.CONFIG)) as f:
                configs[fam] = (key, family_config(f.read()))
    return configs


def _rerun(key: str, content: Mapping[str, bytes], destination: str) -> bool:
    """Whether a cell committed with the same config was run again: its metrics differ
    from the committed copy's (a restored copy, packed again, is byte-identical)."""
    fam, name = key.split("/")
    with open(os.path.join(destination, fam, grid.CELLS, name, files.METRICS), "rb") as f:
        return f.read() != content[files.METRICS]


def _write_cell(target: str, content: Mapping[str, bytes]) -> None:
    for relative, data in content.items():
        path = os.path.join(target, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        files.write_bytes(path, data)


def collect(source: str, destination: str, report: Callable[[str], None] = logging.info,
            phases: Sequence[plan_lib.Phase] = plan_lib.PHASES,
            note: str | None = None, repeats: str | None = None) -> dict[str, list[str]]:
    """Commits the finished cells of `source` (a study root, sweep root or `.tar.gz`).

    Every cell is checked first (planned, run with the plan's configuration,
    the same config as the committed cells of its family and as a committed
    copy of itself); only then are files written. A cell already committed
    with the same config is left as it is; if it ran again (other metrics: a
    second run of the same cell), that run is a "rerun", kept only with
    `repeats`, under `<destination>/repeats/<repeats>/<family>/cells/<cell>`:
    the report compares it with the committed run (the run-to-run noise of
    one cell, seed and mask fixed).

    Args:
        source: where the cells are.
        destination: the committed tree (`docs/results/study`).
        report: receives one summary line.
        phases: the plan the cells must belong to (default: the study's).
        note: what ran them (hardware, software, session), recorded with the
            new cells' (and kept reruns') keys and the time in
            `<destination>/sessions.json`.
        repeats: a tag (letters, digits, '.', '_', '-') to keep the reruns under.

    Returns:
        `{"new": [keys], "same": [keys], "rerun": [keys]}` ("same" excludes reruns).

    Raises:
        ValueError: a cell fails a check, a bad `repeats` tag, or a rerun already
            kept under that tag (nothing is written).
        FileNotFoundError: `source` holds no cells.
    """
    if repeats is not None:
        _check_tag(repeats, "repeats")
    if os.path.isfile(source):
        with tempfile.TemporaryDirectory() as unpacked:
            with tarfile.open(source) as tar:
                tar.extractall(unpacked, filter="data")
            return collect(unpacked, destination, report, phases, note, repeats)
    cells = finished_cells(source)
    contents = {key: small_files(path) for key, path in cells.items()}
    family_configs = _committed_family_configs(destination)
    planned = plan_lib.planned_cells(phases)
    outcome: dict[str, list[str]] = {"new": [], "same": [], "rerun": []}
    for key, content in contents.items():
        verdict = _check(key, content, destination, planned, family_configs)
        if verdict == "same" and _rerun(key, content, destination):
            verdict = "rerun"
        outcome[verdict].append(key)
    repeat_targets = {}
    if repeats is not None:
        for key in outcome["rerun"]:
            fam, name = key.split("/")
            repeat_targets[key] = os.path.join(destination, REPEATS, repeats, fam, grid.CELLS,
                                               name)
            if os.path.exists(repeat_targets[key]):
                raise ValueError(f"{key} already has a repeat kept under {repeats!r}: "
                                 f"{repeat_targets[key]}; give another --repeats tag")
    for key in outcome["new"]:
        fam, name = key.split("/")
        _write_cell(os.path.join(destination, fam, grid.CELLS, name), contents[key])
    for key, target in repeat_targets.items():
        _write_cell(target, contents[key])
    if outcome["new"] or repeat_targets:
        log_path = os.path.join(destination, SESSIONS)
        sessions = files.read_json(log_path) if os.path.isfile(log_path) else []
        entry = {"collected": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "note": note or "", "cells": sorted(outcome["new"])}
        if repeat_targets:
            entry["repeats"] = {repeats: sorted(repeat_targets)}
        sessions.append(entry)
        files.write_json(log_path, sessions)
    reruns = ""
    if outcome["rerun"]:
        reruns = (f"; {len(outcome['rerun'])} were committed already and ran again: "
                  + (f"kept as repeats under {REPEATS}/{repeats}/" if repeats else
                     "left out (keep them with --repeats=<tag>)"))
    report(f"collected {len(outcome['new'])} new cells into {destination}; "
           f"{len(outcome['same'])} were committed already{reruns}")
    return outcome


def restore(results_dir: str, runs_root: str) -> list[str]:
    """Copies the committed cells into `runs_root/<family>/cells/` (a fresh sweep root).

    A sweep there then counts them finished (`metrics.json`) and checks its
    configuration against their `cell_state.json` entries, so it runs only the
    cells not committed yet. Cells already present in `runs_root` are left alone.
    Returns the cell keys copied.
    """
    copied = []
    try:
        committed_cells = finished_cells(results_dir)
    except FileNotFoundError:  # nothing committed yet
        return copied
    for key, cell_dir in committed_cells.items():
        fam, name = key.split("/")
        target = os.path.join(runs_root, fam, grid.CELLS, name)
        if os.path.exists(target):
            continue
        shutil.copytree(cell_dir, target)
        copied.append(key)
        entry_path = os.path.join(target, CELL_STATE)
        if os.path.isfile(entry_path):  # the root view read by sweeps without cell files
            state_path = os.path.join(runs_root, fam, SWEEP_STATE)
            state = files.read_json(state_path) if os.path.isfile(state_path) else {"cells": {}}
            state["cells"][name] = files.read_json(entry_path)
            files.write_json(state_path, state)
    return copied


SUPERSEDED = "superseded"  # under the results directory: cells taken out of the study
REPEATS = "repeats"  # under the results directory: second runs of committed cells


def supersede(results_dir: str, patterns: Sequence[str], tag: str, why: str) -> list[str]:
    """Takes committed cells out of the study, keeping them for the record.

    A code fix can make committed cells wrong without changing their config
    (so `collect` and the plan would keep them). `supersede` moves each cell
    whose key (`<family>/<cell>`) matches one of `patterns` (shell globs, e.g.
    `r20/epsd-*`) to `<results_dir>/superseded/<tag>/<family>/cells/<cell>`,
    and appends `why` with the cells to `superseded/<tag>/WHY.md`. The report
    and the plan no longer see them: the plan lists them as missing, and the
    next device call runs them again.

    Returns:
        The moved keys.

    Raises:
        ValueError: an empty `tag` or `why`, a pattern that matches no committed
            cell, or a cell already superseded under `tag` (before anything moves).
    """
    _check_tag(tag, "supersede")
    if not why.strip():
        raise ValueError(f"supersede needs a reason (got {why!r})")
    committed = dict(cell_dirs(results_dir))
    moves = {}
    for pattern in patterns:
        matched = [key for key in committed if fnmatch.fnmatchcase(key, pattern)]
        if not matched:
            raise ValueError(f"{pattern!r} matches no committed cell under {results_dir}")
        moves.update({key: committed[key] for key in matched})
    base = os.path.join(results_dir, SUPERSEDED, tag)
    targets = {}
    for key in sorted(moves):
        fam, name = key.split("/")
        targets[key] = os.path.join(base, fam, grid.CELLS, name)
        if os.path.exists(targets[key]):
            raise ValueError(f"{key} is already superseded under {tag!r}: {targets[key]}")
    for key, target in targets.items():
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.move(moves[key], target)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with open(os.path.join(base, "WHY.md"), "a") as f:
        f.write(f"## {when}: {len(targets)} cells\n\n{why.strip()}\n\n"
                + "".join(f"- {key}\n" for key in targets) + "\n")
    return list(targets)


def _check_tag(tag: str, what: str) -> None:
    if not tag or not re.fullmatch(r"[A-Za-z0-9._-]+", tag):
        raise ValueError(f"{what} needs a tag of letters, digits, '.', '_' or '-' (got {tag!r})")


def _tagged_roots(results_dir: str, kind: str) -> dict[str, str]:
    base = os.path.join(results_dir, kind)
    if not os.path.isdir(base):
        return {}
    return {tag: os.path.join(base, tag) for tag in sorted(os.listdir(base))
            if os.path.isdir(os.path.join(base, tag))}


def superseded_roots(results_dir: str) -> dict[str, str]:
    """`{tag: directory}` of every `superseded/<tag>/` (a study root of its own)."""
    return _tagged_roots(results_dir, SUPERSEDED)


def repeat_roots(results_dir: str) -> dict[str, str]:
    """`{tag: directory}` of every `repeats/<tag>/` (`collect(repeats=)`; a study root)."""
    return _tagged_roots(results_dir, REPEATS)


def family_roots(source: str) -> list[str]:
    if os.path.isdir(os.path.join(source, grid.CELLS)):
        return [source]
    if not os.path.isdir(source):
        return []
    return [os.path.join(source, name) for name in sorted(os.listdir(source))
            if os.path.isdir(os.path.join(source, name, grid.CELLS))]


def cell_dirs(source: str):
    """`("<family>/<cell>", directory)` of every cell directory under `source`."""
    for root in family_roots(source):
        fam = os.path.basename(os.path.normpath(root))
        cells_dir = os.path.join(root, grid.CELLS)
        for name in sorted(os.listdir(cells_dir)):
            yield f"{fam}/{name}", os.path.join(cells_dir, name)
