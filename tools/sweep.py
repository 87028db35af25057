"""Runs a grid of EPSD experiments and collects the paper-style results.

The grid is scorer × self-distillation method × sparsity × seed over base gin
files (Chen et al., "EPSD", AAAI 2024 compare pruning criteria under each SD
method at high sparsity, averaged over seeds). Each cell is one `tools/run.py`
process (a crash or OOM in one cell cannot kill the sweep, and gin state never
leaks between cells) with its own workdir `<root>/cells/<cell>`, where the cell
is named `<scorer>-<method>-s<sparsity>-seed<seed>`; the scorer `dense` means
no pruning (`run.prune = None`) and ignores the sparsities, so it is one cell
`dense-<method>-seed<seed>` per method and seed.

The paper-style study on Fashion-MNIST (ResNet-20, DLB, two seeds):

  python tools/sweep.py --base_gin=gin/quickstart.gin \
      --scorers=epsd,prospr,snip,random,dense --methods=dlb \
      --sparsities=0.9,0.95,0.98 --seeds=0,1 --root=runs/study

Resumable: re-running the same command skips every finished cell (its workdir
holds `metrics.json`) and re-runs the others with the same command, and
`tools/run.py` resumes an interrupted cell from its BackupAndRestore state. A
finished cell whose gin files or bindings differ from this command's is
refused, so stale results are never mixed in. Cell bindings (the grid axes,
`run.seed`, `load.seed`) are applied after `--gin_bindings`.

Outputs in `<root>`: `sweep_state.json` (status, elapsed and attempts per
cell), `cells/<cell>/run.log` (the cell's own output), and at the end (or with
`--collect_only`) `results.csv` (one row per cell), `results_summary.csv` and
`results.md` (mean ± sample std over seeds: test accuracy, and when measured
Mean-JSV at init, layers left at the per-layer floor, landscape sharpness),
`plots/accuracy_vs_sparsity_<method>.png`, `plots/layer_density_<cell>.png` for
the cells named by `--density_plots` (and `plots/layer_density.png` with them
side by side), and, for cells run with `run.landscape = @loss_landscape`,
`plots/landscape_<method>_s<sparsity>.png` overlaying the first seed's 1-D
landscapes with the dense cells'.
Exits non-zero if any cell failed (after running the others).
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import signal
import subprocess
import sys
import time

# Make `import epsd_tf` work from a source checkout without installation.
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from epsd_tf import analysis  # noqa: E402
from epsd_tf.analysis import results  # noqa: E402
from epsd_tf.pruning import scorers as scorers_lib  # noqa: E402
from epsd_tf.train import workdir as workdir_lib  # noqa: E402

RUN_TOOL = os.path.join(_REPO, "tools", "run.py")
DENSE = results.DENSE
METHODS = {"none": "@NoDistillation()", "dlb": "@DLB()", "cskd": "@CSKD()",
           "pskd": "@PSKD()"}
STATE = "sweep_state.json"
RUN_LOG = "run.log"
TAIL_LINES = 40

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("base_gin", [], "Gin file(s) every cell starts from.")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings applied to every cell.")
flags.DEFINE_string("root", None, "Sweep directory (cells, state, results).")
flags.DEFINE_list("scorers", ["epsd"], f"Pruning scorers, or '{DENSE}' for no pruning.")
flags.DEFINE_list("methods", ["dlb"], f"Self-distillation methods: {sorted(METHODS)}.")
flags.DEFINE_list("sparsities", ["0.9"], "Sparsities (fraction of weights removed).")
flags.DEFINE_list("seeds", ["0"], "Seeds (set run.seed and load.seed).")
flags.DEFINE_list("density_plots", [], "Cells to plot per-layer densities of, or 'all'.")
flags.DEFINE_bool("dry_run", False, "Print the cells and their commands; run nothing.")
flags.DEFINE_bool("collect_only", False, "Only collect the results already in --root.")
flags.DEFINE_integer("max_failures", None,
                     "Stop launching cells once this many failed (default: run all).")
flags.mark_flag_as_required("root")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One experiment of the grid; `sparsity` is 0.0 for a dense cell."""
    scorer: str
    method: str
    sparsity: float
    seed: int

    @property
    def name(self) -> str:
        if self.scorer == DENSE:
            return f"{DENSE}-{self.method}-seed{self.seed}"
        return f"{self.scorer}-{self.method}-s{self.sparsity!r}-seed{self.seed}"

    def bindings(self) -> list[str]:
        """The gin bindings `tools/run.py` gets for this cell."""
        if self.scorer == DENSE:
            prune = ["run.prune = None"]
        else:
            prune = ["run.prune = @prune_at_init", f"prune_at_init.scorer = '{self.scorer}'",
                     f"prune_at_init.sparsity = {self.sparsity!r}"]
        return prune + [f"run.method = {METHODS[self.method]}", f"run.seed = {self.seed}",
                        f"load.seed = {self.seed}"]

    def description(self) -> dict:
        return {"name": self.name, **dataclasses.asdict(self)}


def _parse(values, kind, flag):
    try:
        parsed = [kind(v) for v in values]
    except ValueError as error:
        raise ValueError(f"--{flag}={','.join(values)}: {error}") from error
    if not parsed or len(set(parsed)) != len(parsed):
        raise ValueError(f"--{flag} must list distinct values, got {values}")
    return parsed


def make_grid(scorers, methods, sparsities, seeds) -> list[Cell]:
    """The cells, seed-major (a complete table for the first seed comes first).

    Raises:
        ValueError: an unknown scorer or method, a sparsity outside [0, 1), a
            non-integer seed, or an empty or repeated list.
    """
    scorers = _parse(scorers, str, "scorers")
    methods = _parse(methods, str, "methods")
    sparsities = _parse(sparsities, float, "sparsities")
    seeds = _parse(seeds, int, "seeds")
    for scorer in scorers:
        if scorer != DENSE and scorer not in scorers_lib.SCORERS:
            raise ValueError(f"Unknown scorer {scorer!r}; valid: "
                             f"{sorted(scorers_lib.SCORERS) + [DENSE]}")
    for method in methods:
        if method not in METHODS:
            raise ValueError(f"Unknown method {method!r}; valid: {sorted(METHODS)}")
    for sparsity in sparsities:
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity {sparsity} is outside [0, 1) (the fraction removed)")
    cells = []
    for seed in seeds:
        for method in methods:
            for scorer in scorers:
                levels = [0.0] if scorer == DENSE else sparsities
                cells += [Cell(scorer, method, sparsity, seed) for sparsity in levels]
    return cells


def cell_dir(root: str, cell: Cell) -> str:
    return os.path.join(root, "cells", cell.name)


def cell_command(cell: Cell, root: str, gin_files, gin_bindings,
                 run_tool: str = RUN_TOOL) -> list[str]:
    """The `tools/run.py` command of a cell (cell bindings last, so they win)."""
    return ([sys.executable, run_tool] + [f"--gin_file={f}" for f in gin_files] +
            [f"--gin_bindings={b}" for b in [*gin_bindings, *cell.bindings()]] +
            [f"--workdir={cell_dir(root, cell)}"])


def _is_finished(root: str, cell: Cell) -> bool:
    return os.path.exists(os.path.join(cell_dir(root, cell), workdir_lib.METRICS))


def _load_state(root: str) -> dict:
    path = os.path.join(root, STATE)
    return workdir_lib.read_json(path) if os.path.exists(path) else {"cells": {}}


def _config(cell: Cell, gin_files, gin_bindings) -> dict:
    return {"gin_files": list(gin_files),
            "gin_bindings": [*gin_bindings, *cell.bindings()]}


def _check_finished_cells(cells, root, state, gin_files, gin_bindings) -> None:
    """Refuses to reuse a finished cell that was run with another configuration."""
    for cell in cells:
        recorded = state["cells"].get(cell.name, {}).get("config")
        expected = _config(cell, gin_files, gin_bindings)
        if _is_finished(root, cell) and recorded is not None and recorded != expected:
            raise ValueError(
                f"cell {cell.name} in {root} finished with {recorded}, but this sweep "
                f"would run it with {expected}. Use a new --root, or delete "
                f"{cell_dir(root, cell)} to run it again.")


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _report(message: str) -> None:
    """A progress line in the absl log and, short, on stdout."""
    logging.info("%s", message)
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def _log_tail(path: str, offset: int) -> str:
    with open(path, errors="replace") as f:
        f.seek(offset)
        return "\n".join(f.read().splitlines()[-TAIL_LINES:])


def _run_cell(cell: Cell, command: list[str], root: str, state: dict, entry: dict) -> bool:
    """Runs one cell's process, its output appended to its run.log; True if it finished."""
    directory = cell_dir(root, cell)
    os.makedirs(directory, exist_ok=True)
    workdir_lib.atomic_write_json(os.path.join(directory, results.CELL_FILE),
                                  cell.description())
    log_path = os.path.join(directory, RUN_LOG)
    entry.update(status="running", attempts=entry.get("attempts", 0) + 1,
                 started=time.time(), returncode=None)
    workdir_lib.atomic_write_json(os.path.join(root, STATE), state)
    with open(log_path, "a") as log:
        offset = log.tell()
        log.write(f"=== attempt {entry['attempts']}: {shlex.join(command)}\n")
        log.flush()
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            returncode = process.wait()
        except BaseException:
            # The sweep itself is stopping (Ctrl-C, SIGTERM): stop the cell too, so
            # no orphan keeps writing into its workdir; its backup lets it resume.
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            entry.update(status="interrupted", elapsed=time.perf_counter() - start)
            workdir_lib.atomic_write_json(os.path.join(root, STATE), state)
            raise
    finished = returncode == 0 and _is_finished(root, cell)
    entry.update(status="done" if finished else "failed", returncode=returncode,
                 elapsed=time.perf_counter() - start)
    workdir_lib.atomic_write_json(os.path.join(root, STATE), state)
    if not finished:
        why = (f"exit code {returncode}" if returncode else
               f"exit code 0 but no {workdir_lib.METRICS}")
        tail = _log_tail(log_path, offset)
        logging.error("cell %s failed (%s); end of %s:\n%s", cell.name, why, log_path, tail)
        sys.stdout.write(f"--- {cell.name} failed ({why}); last lines of {log_path}:\n"
                         f"{tail}\n---\n")
    return finished


def run_sweep(cells: list[Cell], root: str, gin_files, gin_bindings, *,
              max_failures: int | None = None, run_tool: str = RUN_TOOL) -> dict:
    """Runs every unfinished cell in turn; returns the cell names by outcome.

    Args:
        cells: the grid (`make_grid`).
        root: the sweep directory.
        gin_files, gin_bindings: passed to every cell before its own bindings.
        max_failures: stop launching cells once this many failed (None: never).
        run_tool: the script run per cell (`tools/run.py`; its flags).

    Returns:
        `{"done": [...], "skipped": [...], "failed": [...], "not_run": [...]}`;
        `skipped` cells had finished before this call.

    Raises:
        ValueError: a finished cell was run with a different configuration.
    """
    if max_failures is not None and max_failures < 1:
        raise ValueError(f"max_failures must be >= 1 or None, got {max_failures}")
    os.makedirs(os.path.join(root, "cells"), exist_ok=True)
    state = _load_state(root)
    _check_finished_cells(cells, root, state, gin_files, gin_bindings)
    outcome = {"done": [], "skipped": [], "failed": [], "not_run": []}
    # ETA: the mean duration of the finished cells (earlier sweeps included).
    durations = [state["cells"][c.name]["elapsed"] for c in cells
                 if _is_finished(root, c) and "elapsed" in state["cells"].get(c.name, {})]
    to_run = sum(not _is_finished(root, c) for c in cells)
    sweep_start = time.perf_counter()
    for index, cell in enumerate(cells, start=1):
        prefix = f"[{index}/{len(cells)}] {cell.name}"
        entry = state["cells"].setdefault(cell.name, {})
        if _is_finished(root, cell):
            if entry.get("status") != "done":  # finished after the state was last written
                entry["status"] = "done"
                workdir_lib.atomic_write_json(os.path.join(root, STATE), state)
            outcome["skipped"].append(cell.name)
            _report(f"{prefix}: done (finished earlier, skipped)")
            continue
        if max_failures is not None and len(outcome["failed"]) >= max_failures:
            outcome["not_run"].append(cell.name)
            continue
        entry["config"] = _config(cell, gin_files, gin_bindings)
        _report(f"{prefix}: running (sweep time {_clock(time.perf_counter() - sweep_start)})")
        command = cell_command(cell, root, gin_files, gin_bindings, run_tool)
        finished = _run_cell(cell, command, root, state, entry)
        outcome["done" if finished else "failed"].append(cell.name)
        to_run -= 1
        if finished:
            durations.append(entry["elapsed"])
        eta = (_clock(to_run * sum(durations) / len(durations)) if durations else "unknown")
        _report(f"{prefix}: {'done' if finished else 'failed'} in {_clock(entry['elapsed'])}; "
                f"{len(outcome['done']) + len(outcome['skipped'])} done, "
                f"{len(outcome['failed'])} failed, {to_run} to go, ETA {eta}")
    if outcome["not_run"]:
        _report(f"stopped after {len(outcome['failed'])} failed cells (--max_failures); "
                f"not run: {outcome['not_run']}")
    return outcome


def density_cells(requested, root: str, cells: list[Cell] | None) -> list[str]:
    """Validates `--density_plots` against the grid (or, without one, the root's cells)."""
    if cells is not None:
        valid = [c.name for c in cells if c.scorer != DENSE]
    else:
        cells_dir = os.path.join(root, "cells")
        valid = sorted(name for name in (os.listdir(cells_dir) if os.path.isdir(cells_dir)
                                         else [])
                       if os.path.exists(os.path.join(cells_dir, name,
                                                      workdir_lib.PRUNING_REPORT)))
    if list(requested) == ["all"]:
        return valid
    unknown = [name for name in requested if name not in valid]
    if unknown:
        raise ValueError(f"--density_plots names {unknown}, which are not pruned cells of "
                         f"this sweep; valid: {valid} or 'all'")
    return list(requested)


def write_results(root: str, plot_cells=()) -> list[str]:
    """Collects the finished cells into tables and plots; returns the files written."""
    rows = results.collect(root)
    if not rows:
        logging.warning("no finished cell in %s yet; no results written", root)
        return []
    summary = results.aggregate(rows)
    written = [results.write_csv(rows, os.path.join(root, "results.csv")),
               results.write_csv(summary, os.path.join(root, "results_summary.csv"))]
    text = "# Sweep results\n\n## Test accuracy\n\n" + results.markdown_table(summary)
    if any(row["mean_jsv_init"] is not None for row in rows):
        text += ("\n## Mean-JSV at initialisation\n\n" +
                 results.markdown_table(summary, "mean_jsv_init", percent=False, digits=3))
    if any(row["floor_layers"] is not None for row in rows):
        text += ("\n## Layers left at the per-layer floor (min_density; empty without one)\n\n"
                 + results.markdown_table(summary, "floor_layers", percent=False, digits=1))
    if any(row["landscape_sharpness"] is not None for row in rows):
        text += ("\n## Loss-landscape sharpness (loss rise at ±radius/2)\n\n" +
                 results.markdown_table(summary, "landscape_sharpness", percent=False,
                                        digits=3))
    workdir_lib.atomic_write_text(os.path.join(root, "results.md"), text)
    written.append(os.path.join(root, "results.md"))
    plots = os.path.join(root, "plots")
    written += results.plot_accuracy_vs_sparsity(
        summary, os.path.join(plots, "accuracy_vs_sparsity_{method}.png")).values()
    written += _landscape_overlays(root, rows, plots)
    reports = []
    for name in plot_cells:
        report = os.path.join(root, "cells", name, workdir_lib.PRUNING_REPORT)
        if not os.path.exists(report):
            logging.warning("no density plot for %s: it has no %s (not pruned yet)", name,
                            workdir_lib.PRUNING_REPORT)
            continue
        written.append(results.plot_layer_densities(
            [report], os.path.join(plots, f"layer_density_{name}.png")))
        reports.append(report)
    if len(reports) > 1:  # the chosen cells side by side
        written.append(results.plot_layer_densities(
            reports, os.path.join(plots, "layer_density.png")))
    return written


def _landscape_overlays(root: str, rows, plots: str) -> list[str]:
    """Overlays of the first seed's 1-D landscapes, one per (method, sparsity).

    Every dense cell (of any method) is drawn in each overlay, so a pruned cell
    is seen against the dense network with and without self-distillation.
    """
    with_landscape = [r for r in rows if r["landscape_sharpness"] is not None]
    if not with_landscape:
        return []
    seed = min(r["seed"] for r in with_landscape)
    first = [r for r in with_landscape if r["seed"] == seed]
    dense = [r for r in first if r["scorer"] == results.DENSE]
    groups = sorted({(r["method"], r["sparsity"]) for r in first if r["scorer"] != results.DENSE})
    written = []
    for method, sparsity in groups or [(None, None)]:
        chosen = dense + [r for r in first if r["scorer"] != results.DENSE and
                          r["method"] == method and r["sparsity"] == sparsity]
        curves = {f"{r['scorer']} + {r['method']}": analysis.read_landscape(
            os.path.join(root, "cells", r["cell"])) for r in chosen}
        name = "landscape_dense.png" if method is None else \
            f"landscape_{method}_s{sparsity:g}.png"
        title = f"seed {seed}" if method is None else \
            f"{method}, sparsity {100 * sparsity:g} %, seed {seed}"
        written.append(analysis.plot_landscape_overlay(curves, os.path.join(plots, name),
                                                       title=title))
    return written


def _stop_on_sigterm(signum, frame):
    del frame
    raise SystemExit(f"sweep stopped by signal {signum}; run the same command to resume")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    root = FLAGS.root
    if FLAGS.collect_only:
        written = write_results(root, density_cells(FLAGS.density_plots, root, None))
        _report(f"results: {written}")
        return 0
    if not FLAGS.base_gin:
        raise app.UsageError("--base_gin is required, e.g. --base_gin=gin/quickstart.gin")
    cells = make_grid(FLAGS.scorers, FLAGS.methods, FLAGS.sparsities, FLAGS.seeds)
    plot_cells = density_cells(FLAGS.density_plots, root, cells)
    if FLAGS.dry_run:
        for cell in cells:
            status = "done" if _is_finished(root, cell) else "to run"
            command = cell_command(cell, root, FLAGS.base_gin, FLAGS.gin_bindings)
            sys.stdout.write(f"{cell.name} [{status}]: {shlex.join(command)}\n")
        return 0
    previous_handler = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        outcome = run_sweep(cells, root, FLAGS.base_gin, FLAGS.gin_bindings,
                            max_failures=FLAGS.max_failures, run_tool=RUN_TOOL)
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    written = write_results(root, plot_cells)
    failed = f" {outcome['failed']}" if outcome["failed"] else ""
    _report(f"sweep of {len(cells)} cells: {len(outcome['done'])} run, "
            f"{len(outcome['skipped'])} finished earlier, {len(outcome['failed'])} failed"
            f"{failed}, {len(outcome['not_run'])} not run; "
            f"results: {os.path.join(root, 'results.md') if written else 'none yet'}")
    return 1 if outcome["failed"] or outcome["not_run"] else 0


if __name__ == "__main__":
    app.run(main)
