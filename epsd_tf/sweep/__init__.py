"""epsd_tf.sweep: grids of EPSD experiments, one `tools/run.py` process per cell.

The grid is scorer × self-distillation method × sparsity × seed over base gin
files (Chen et al., "EPSD", AAAI 2024 compare pruning criteria under each SD
method at high sparsity, averaged over seeds).

* `grid` — `Cell` (name, gin bindings, workdir), `make_grid`, `cell_command`.
* `state` — per-cell `cell_state.json` (status, attempts, elapsed, config)
  and the derived `sweep_state.json`; the refusal to reuse a finished cell
  run with another configuration.
* `runner` — `CellRun`/`run_cell`: one cell's process under the cell's lock
  (with a heartbeat), its output appended to the cell's `run.log`.
* `placement` — `--parallel`, `--slots`: each slot's GPU, memory share and CPU cores.
* `mps` — `--mps`: a CUDA MPS daemon, so cells sharing a GPU run side by side.
* `shards` — `--shard i/n`: which cells a shard runs; its progress file.
* `pool` — `Pool`: up to N cell processes at once, progress and ETA.
* `loop` — `run_sweep` (this shard's unfinished cells through the pool,
  resume) and `sweep` (the whole command: dry run, run, results, exit code).
* `status` — `grid_status`/`format_status`: `--status` of a whole root.
* `report` — `write_results`: the tables (`analysis.results`) and plots
  (`analysis.plots`) of the finished cells.
"""

from epsd_tf.sweep.grid import DENSE, RUN_TOOL, Cell, cell_command, cell_dir, make_grid
from epsd_tf.sweep.loop import density_cells, run_sweep, sweep
from epsd_tf.sweep.report import write_results
from epsd_tf.sweep.runner import run_cell
from epsd_tf.sweep.shards import parse_shard
from epsd_tf.sweep.state import STATE, SweepState
from epsd_tf.sweep.status import format_status, grid_status

__all__ = ["DENSE", "RUN_TOOL", "STATE", "Cell", "SweepState", "cell_command", "cell_dir",
           "density_cells", "format_status", "grid_status", "make_grid", "parse_shard",
           "run_cell", "run_sweep", "sweep", "write_results"]
