"""`epsd-sweep`: runs a grid of EPSD experiments and collects the paper-style results.

The grid is scorer × self-distillation method × sparsity × seed over base gin
files; each cell is one `tools/run.py` process with its own workdir
`<root>/cells/<cell>`, named `<scorer>-<method>-s<sparsity>-seed<seed>` (the
scorer `dense` means no pruning: one cell `dense-<method>-seed<seed>` per
method and seed). The logic is the library's `epsd_tf.sweep`; this file only
maps flags to it.

The paper-style study on Fashion-MNIST (ResNet-20, DLB, two seeds):

  epsd-sweep --base_gin=gin/quickstart.gin \
      --scorers=epsd,prospr,snip,random,dense --methods=dlb \
      --sparsities=0.9,0.95,0.98 --seeds=0,1 --root=runs/study

Spread over devices and hosts: `--parallel=N` runs N cells at once on this
machine (pinned to the GPUs round robin, sharing them when N exceeds them; on
CPU the cores are divided); `--shard=i/n` runs shard i of n hosts sharing
--root (e.g. `--shard=$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`);
`--status` reports every cell of --root and runs nothing.

Resumable: re-running the same command skips every finished cell (its workdir
holds `metrics.json`) and re-runs the others with the same command, and
`tools/run.py` resumes an interrupted cell. A finished cell whose gin files or
bindings differ from this command's is refused. Cell bindings (the grid axes,
`run.seed`, `load.seed`) are applied after `--gin_bindings`.

Outputs in `<root>`: `sweep_state.json` (status, elapsed and attempts per
cell), `cells/<cell>/run.log` (the cell's own output), and at the end (or with
`--collect_only`) `results.csv`, `results_summary.csv`, `results.md` and
`plots/` (see `epsd_tf/sweep/report.py`).
Exits non-zero if any cell failed (after running the others).
"""

import contextlib
import signal
import sys

from absl import app, flags, logging

from epsd_tf import cli, sweep
from epsd_tf.distill import methods
from epsd_tf.sweep import mps

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("base_gin", [], "Gin file(s) every cell starts from.")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings applied to every cell.")
flags.DEFINE_string("root", None, "Sweep directory (cells, state, results).")
flags.DEFINE_list("scorers", ["epsd"], f"Pruning scorers, or '{sweep.DENSE}' for no pruning.")
flags.DEFINE_list("methods", ["dlb"], f"Self-distillation methods: {sorted(methods.METHODS)}.")
flags.DEFINE_list("sparsities", ["0.9"], "Sparsities (fraction of weights removed).")
flags.DEFINE_list("seeds", ["0"], "Seeds (set run.seed and load.seed).")
flags.DEFINE_list("density_plots", [], "Cells to plot per-layer densities of, or 'all'.")
flags.DEFINE_bool("dry_run", False, "Print the cells and their commands; run nothing.")
flags.DEFINE_bool("collect_only", False, "Only collect the results already in --root.")
flags.DEFINE_integer("max_failures", None,
                     "Stop launching cells once this many failed (default: run all).")
flags.DEFINE_string("run_tool", sweep.RUN_TOOL,
                    "The script each cell runs (epsd-run's, or one with its flags).")
flags.DEFINE_integer(
    "parallel", 1, "Cells at once on this machine: each pinned to a GPU round robin (sharing "
    "GPUs when more cells than GPUs) and to its share of the CPU cores.", lower_bound=1)
flags.DEFINE_integer(
    "gpus", None, "GPUs to spread the cells over (0: CPU only); default: detected from "
    "CUDA_VISIBLE_DEVICES or nvidia-smi -L.", lower_bound=0)
flags.DEFINE_string(
    "slots", None, "ids/total: run on these slots of the machine divided into total (e.g. "
    "'3,4,5/8' with --parallel=3), when several sweeps share it (tools/study.py device): "
    "each slot gets that share of the cores and the GPU memory.")
flags.DEFINE_bool("mps", False, "Run the cells under CUDA MPS, so that cells sharing a GPU "
                  "(--parallel above the GPUs) run side by side, not in turns "
                  "(epsd_tf/sweep/mps.py; needs nvidia-cuda-mps-control).")
flags.DEFINE_string("shard", None,
                    "i/n: run only shard i of n of the grid (hosts sharing --root; e.g. "
                    "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT).")
flags.DEFINE_bool("wait_busy", True,
                  "Wait for cells another live sweep on --root runs: count them done if it "
                  "finishes them, run them if it dies. --nowait_busy: leave them to it.")
flags.DEFINE_float("start_until", None,
                   "Start no cell after this Unix time (seconds since the epoch, e.g. "
                   "$(( $(date +%s) + 300 ))); the cells not started are reported not run, "
                   "the running ones finish (tools/study.py device --start_before).")
flags.DEFINE_bool("status", False,
                  "Report every cell of --root (done, running where, failed, pending), "
                  "per-shard progress and the ETA; run nothing.")
flags.mark_flag_as_required("root")


@flags.validator("shard")
def _check_shard(text):
    try:
        sweep.parse_shard(text)
    except ValueError as error:
        raise flags.ValidationError(str(error)) from error
    return True


def _report(message: str) -> None:
    """A progress line in the absl log and on stdout."""
    logging.info("%s", message)
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def _stop_on_sigterm(signum, frame):
    del frame
    raise SystemExit(f"sweep stopped by signal {signum}; run the same command to resume")


def _main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if FLAGS.status:
        for line in sweep.format_status(sweep.grid_status(FLAGS.root)):
            _report(line)
        return 0
    if not FLAGS.base_gin and not FLAGS.collect_only:
        raise app.UsageError("--base_gin is required, e.g. --base_gin=gin/quickstart.gin")
    previous_handler = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    # SIGINT (Ctrl-C, `timeout -s INT`) stops the sweep even when it was started with
    # SIGINT ignored, as every background job of a shell script is (Python then keeps
    # the inherited SIG_IGN and would run on to the end).
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        runs_cells = FLAGS.mps and not (FLAGS.dry_run or FLAGS.collect_only)
        with mps.daemon() if runs_cells else contextlib.nullcontext():
            return _sweep()
    except KeyboardInterrupt:
        # Ctrl-C (or `timeout -s INT`): the pool has stopped every cell; one line, no traceback.
        raise SystemExit("sweep interrupted; its cells stopped (their backups let them "
                         "resume): run the same command to resume") from None
    except mps.MpsError as error:
        raise app.UsageError(str(error)) from None
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        signal.signal(signal.SIGINT, previous_int)


def _sweep() -> int:
    return sweep.sweep(
        FLAGS.root, gin_files=FLAGS.base_gin, gin_bindings=FLAGS.gin_bindings,
        scorers=FLAGS.scorers, methods=FLAGS.methods, sparsities=FLAGS.sparsities,
        seeds=FLAGS.seeds, density_plots=FLAGS.density_plots, dry_run=FLAGS.dry_run,
        collect_only=FLAGS.collect_only, max_failures=FLAGS.max_failures,
        run_tool=FLAGS.run_tool, report=_report, parallel=FLAGS.parallel,
        gpus=FLAGS.gpus, shard=FLAGS.shard, wait_busy=FLAGS.wait_busy, slots=FLAGS.slots,
        start_until=FLAGS.start_until)


def main():
    """Console-script entry point of `epsd-sweep`."""
    cli.run_app(_main, __name__)


if __name__ == "__main__":
    main()
