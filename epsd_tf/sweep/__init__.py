"""epsd_tf.sweep: grids of EPSD experiments, one `tools/run.py` process per cell.

The grid is scorer × self-distillation method × sparsity × seed over base gin
files (Chen et al., "EPSD", AAAI 2024 compare pruning criteria under each SD
method at high sparsity, averaged over seeds).

* `grid` — `Cell` (name, gin bindings, workdir), `make_grid`, `cell_command`.
* `state` — `sweep_state.json` (status, attempts, elapsed, config per cell)
  and the refusal to reuse a finished cell run with another configuration.
* `runner` — `run_cell`: one cell's process under the cell's lock, its output
  appended to the cell's `run.log`.
* `loop` — `run_sweep` (every unfinished cell in turn, progress and ETA, resume)
  and `sweep` (the whole command: dry run, run, results, exit code).
* `report` — `write_results`: the tables (`analysis.results`) and plots
  (`analysis.plots`) of the finished cells.
"""

from epsd_tf.sweep.grid import DENSE, RUN_TOOL, Cell, cell_command, cell_dir, make_grid
from epsd_tf.sweep.loop import density_cells, run_sweep, sweep
from epsd_tf.sweep.report import write_results
from epsd_tf.sweep.runner import run_cell
from epsd_tf.sweep.state import STATE, SweepState

__all__ = ["DENSE", "RUN_TOOL", "STATE", "Cell", "SweepState", "cell_command", "cell_dir",
           "density_cells", "make_grid", "run_cell", "run_sweep", "sweep", "write_results"]
