"""The sweep loop: every unfinished cell in turn, with progress, ETA and resume.

Resumable: running the same sweep again skips every finished cell (its
workdir holds `metrics.json`) and re-runs the others with the same command,
the cells with progress on disk first; `tools/run.py` resumes an interrupted
cell from its own workdir. A finished
cell whose gin files or bindings differ from this sweep's is refused, so
stale results are never mixed in. Cell bindings (the grid axes, `run.seed`,
`load.seed`) are applied after the sweep's own bindings.
"""

from __future__ import annotations

import os
import shlex
from typing import Callable, Sequence

from absl import logging

from epsd_tf import files
from epsd_tf.sweep import grid, placement, shards
from epsd_tf.sweep.pool import Pool
from epsd_tf.sweep.report import write_results
from epsd_tf.sweep.state import SweepState

OUTCOMES = ("done", "skipped", "failed", "busy", "not_run")


def run_sweep(cells: Sequence[grid.Cell], root: str, gin_files, gin_bindings, *,
              max_failures: int | None = None, run_tool: str = grid.RUN_TOOL,
              report: Callable[[str], None] = logging.info, parallel: int = 1,
              gpus: int | None = None, shard: str | None = None,
              wait_busy: bool = True, slots: str | None = None,
              start_until: float | None = None) -> dict:
    """Runs every unfinished cell (of this shard), `parallel` at once, those a crash
    or a deadline cut first (they resume from their backup); returns the cell
    names by outcome.

    Args:
        cells: the grid (`make_grid`).
        root: the sweep directory.
        gin_files, gin_bindings: passed to every cell before its own bindings.
        max_failures: stop launching cells once this many failed (None: never).
        run_tool: the script run per cell (`tools/run.py`, or one with its flags).
        report: receives one progress line per event (default: the absl log).
        parallel: cells at once on this machine (`placement.py` pins each to
            its GPU and its share of the CPU cores when > 1).
        gpus: GPUs to use (None: detect; 0: CPU only).
        slots: `"ids/total"`: these slots of a machine divided into `total`
            (`placement.parse_slots`), when several sweeps share it.
        shard: `"i/n"`: run only this shard's cells (`shards.py`); None: all.
        wait_busy: wait for the cells another live sweep on the same root runs
            (once this sweep has started all its other cells): count them done
            if it finishes them, run them if it stops or dies (`pool.py`).
            False: leave them to it at once (`busy`).
        start_until: start no cell after this Unix time (`time.time()`); the
            cells not started by then are `not_run`, the running ones finish.

    Returns:
        `{"done", "skipped", "failed", "busy", "not_run": [cell names]}`;
        `skipped` cells had finished before (or were finished meanwhile by
        another sweep), `busy` ones were being run by another sweep on the
        same root when this one stopped waiting for them.

    Raises:
        ValueError: bad `max_failures`, `parallel`, `gpus` or `shard`, or a
            finished cell was run with a different configuration (before any
            cell runs or any file is written).
    """
    if max_failures is not None and max_failures < 1:
        raise ValueError(f"max_failures must be >= 1 or None, got {max_failures}")
    index, count = shards.parse_shard(shard)
    slots = placement.placements(parallel, placement.detect_gpus(gpus),
                                 placement.available_cores(), root, slots)
    state = SweepState(root)
    state.check_finished_cells(cells, gin_files, gin_bindings)
    mine = shards.select(list(enumerate(cells, start=1)), index, count)
    os.makedirs(os.path.join(root, grid.CELLS), exist_ok=True)
    # ETA: the mean duration of the finished cells (earlier sweeps included).
    durations = [state.entry(c)["elapsed"] for c in cells
                 if state.is_finished(c) and "elapsed" in state.entry(c)]
    if count > 1:
        report(f"shard {index}/{count}: {len(mine)} of the {len(cells)} cells")
    for number, slot in enumerate(slots):
        report(f"slot {number}: {slot.describe()}" if parallel > 1 else
               f"cells: {slot.describe()}")
    skipped, todo = [], []
    for position, cell in mine:
        if not state.is_finished(cell):
            todo.append((position, cell))
            continue
        if state.entry(cell).get("status") != "done":  # finished after its state was written
            state.entry(cell)["status"] = "done"
            state.save_cell(cell)
        skipped.append(cell.name)
        report(f"[{position}/{len(cells)}] {cell.name}: done (finished earlier, skipped)")
    # Cells a crash or a deadline cut resume first: the least work to a result.
    cut = [cell.name for _, cell in todo if files.has_progress(grid.cell_dir(root, cell))]
    todo.sort(key=lambda item: item[1].name not in cut)
    if cut:
        report(f"{len(cut)} cells resume first: {cut}")
    pool = Pool(root, state, gin_files, gin_bindings, slots=slots, run_tool=run_tool,
                report=report, max_failures=max_failures, total=len(cells),
                durations=durations, shard=(index, count),
                shard_cells=[cell.name for _, cell in mine],
                grid_cells=[cell.name for cell in cells], wait_busy=wait_busy,
                start_until=start_until)
    outcome = pool.run(todo, skipped)
    state.save()
    if outcome["not_run"]:
        why = ("the start deadline passed" if max_failures is None or
               len(outcome["failed"]) < max_failures else
               f"{len(outcome['failed'])} cells failed (--max_failures)")
        report(f"stopped starting cells: {why}; not run: {outcome['not_run']}")
    return {name: outcome[name] for name in OUTCOMES}


def density_cells(requested, root: str, cells: Sequence[grid.Cell] | None) -> list[str]:
    """Validates `--density_plots` against the grid (or, without one, the root's cells).

    Raises:
        ValueError: a requested name is not a pruned cell (the valid ones listed).
    """
    if cells is not None:
        valid = [c.name for c in cells if c.scorer != grid.DENSE]
    else:
        cells_dir = os.path.join(root, grid.CELLS)
        names = os.listdir(cells_dir) if os.path.isdir(cells_dir) else []
        valid = sorted(name for name in names if os.path.exists(
            os.path.join(cells_dir, name, files.PRUNING_REPORT)))
    if list(requested) == ["all"]:
        return valid
    unknown = [name for name in requested if name not in valid]
    if unknown:
        raise ValueError(f"--density_plots names {unknown}, which are not pruned cells of "
                         f"this sweep; valid: {valid} or 'all'")
    return list(requested)


def sweep(root: str, *, gin_files=(), gin_bindings=(), scorers=(), methods=(),
          sparsities=(), seeds=(), density_plots=(), dry_run: bool = False,
          collect_only: bool = False, max_failures: int | None = None,
          run_tool: str = grid.RUN_TOOL,
          report: Callable[[str], None] = logging.info, parallel: int = 1,
          gpus: int | None = None, shard: str | None = None, wait_busy: bool = True,
          slots: str | None = None, start_until: float | None = None) -> int:
    """The whole sweep command (`tools/sweep.py`); returns its exit code.

    Validates the flags, the grid and the density-plot cells first; then a
    dry run reports each cell's status and command, `collect_only` writes the
    results of the finished cells (of every shard), and otherwise every
    unfinished cell (of this shard) runs, `parallel` at once, and the results
    are written. Exit code 1 if a cell failed or was not run.

    Raises:
        ValueError: no gin file (unless `collect_only`), a bad grid, or a bad
            `parallel`, `gpus`, `shard`, `slots` (before any file is written).
    """
    shards.parse_shard(shard)
    placement.placements(parallel, placement.detect_gpus(gpus), placement.available_cores(),
                         slots=slots)
    if collect_only:
        written = write_results(root, density_cells(density_plots, root, None))
        report(f"results: {written}")
        return 0
    if not gin_files:
        raise ValueError("a sweep needs a base gin file, e.g. --base_gin=gin/quickstart.gin")
    cells = grid.make_grid(scorers, methods, sparsities, seeds)
    plot_cells = density_cells(density_plots, root, cells)
    if dry_run:
        state = SweepState(root)  # reads only
        index, count = shards.parse_shard(shard)
        places = placement.placements(parallel, placement.detect_gpus(gpus),
                                      placement.available_cores(), root, slots)
        for number, slot in enumerate(places):
            report(f"slot {number}: {slot.describe()}" if parallel > 1 else
                   f"cells: {slot.describe()}")
        for _, cell in shards.select(list(enumerate(cells)), index, count):
            status = "done" if state.is_finished(cell) else "to run"
            command = grid.cell_command(cell, root, gin_files, gin_bindings, run_tool)
            report(f"{cell.name} [{status}]: {shlex.join(command)}")
        return 0
    outcome = run_sweep(cells, root, gin_files, gin_bindings, max_failures=max_failures,
                        run_tool=run_tool, report=report, parallel=parallel, gpus=gpus,
                        shard=shard, wait_busy=wait_busy, slots=slots,
                        start_until=start_until)
    written = write_results(root, plot_cells)
    failed = f" {outcome['failed']}" if outcome["failed"] else ""
    report(f"sweep of {len(cells)} cells: {len(outcome['done'])} run, "
           f"{len(outcome['skipped'])} finished earlier, {len(outcome['failed'])} failed"
           f"{failed}, {len(outcome['busy'])} run elsewhere, {len(outcome['not_run'])} not "
           f"run; results: {os.path.join(root, 'results.md') if written else 'none yet'}")
    return 1 if outcome["failed"] or outcome["not_run"] else 0
