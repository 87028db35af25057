"""`tools/study.py`: the full-length reproduction study (issue 13), session by session.

  python tools/study.py plan [--all] [--sweep_flags=--parallel=5]
      the next unfinished phase's commands, given what is committed
  python tools/study.py restore --to=runs/study        (on the GPU machine)
      the committed cells into a fresh sweep root, so the sweeps skip them
  python tools/study.py pack --from=runs/study --to=$OUT/study_cells.tar.gz \
      [--unfinished_to=$OUT]
      every finished cell's small files into one tarball (on the GPU machine);
      with --unfinished_to, the cells a time limit cut, whole, as
      unfinished-NN.tar.gz parts (scratch, not committed)
  python tools/study.py restore --to=runs/study [--unfinished=<dir of those parts>]
      ... and the cut cells, so the same sweep commands resume them
  python tools/study.py collect --from=<tarball or sweep root> --note="1 H200, JAX 0.11.2" \
      [--repeats=<tag>] [--keep_unfinished=.probe/unfinished]
      commit those files (refused: unplanned cells, another configuration, a test
      accuracy over 5 pt from the last validation accuracy); with
      --repeats, committed cells that ran again are kept under <results>/repeats/<tag>/;
      with --keep_unfinished=DIR, the call's cut cells (its unfinished/) go to DIR
      for the next call's --unfinished=DIR
  python tools/study.py device --mps --seconds=470 --limit=550 --parallel=8 --to=$OUT \
      [--unfinished=<dir>] [--phases=vgg16 --start_before=60]
      one device call (on the GPU machine): restore, the plan's next sweeps sharing
      --parallel slots until --seconds, then pack finished and unfinished cells,
      the sweep logs and a summary into --to (at most 8 files); with
      --start_before no cell starts after it and the call ends when they finish
  python tools/study.py supersede --cells='r20/epsd-*' --tag=<name> --why="..."
      take committed cells a code fix made wrong out of the study, kept under
      <results>/superseded/<tag>/; the plan runs them again
  python tools/study.py report [--to=docs/RESULTS.md]
      re-create docs/RESULTS.md and its figures from the committed cells (CPU, seconds)

The plan is `epsd_tf/study/plan.py`; the committed form of a cell
`epsd_tf/study/archive.py`; the write-up `epsd_tf/study/report.py`.
"""

import contextlib
import os
import sys

from absl import app, flags, logging

from epsd_tf import cli

FLAGS = flags.FLAGS
ACTIONS = ("plan", "restore", "pack", "collect", "report", "device", "supersede")
RESULTS = "docs/results/study"
flags.DEFINE_string("results", RESULTS, "The committed study results (plan, restore, report).")
flags.DEFINE_string("from", None, "pack: the study root; collect: a tarball, study or sweep root.")
flags.DEFINE_string("to", None, "restore: the sweep root (runs/study); pack: the tarball; "
                    "device: the output directory ($OUT); "
                    "collect: the committed tree (default --results); report: RESULTS.md.")
flags.DEFINE_string("unfinished_to", None, "pack: also write the unfinished cells (whole, "
                    "to resume on the next machine) as unfinished-NN.tar.gz parts here.")
flags.DEFINE_integer("unfinished_parts", None, "pack: at most this many unfinished parts "
                     "(the device brings back 8 files); the least advanced cells are left out.")
flags.DEFINE_string("unfinished", None, "restore: a directory of unfinished-NN.tar.gz parts "
                    "written by pack --unfinished_to; their cells go back under --to.")
flags.DEFINE_float("seconds", None, "device: stop the sweeps this many seconds after the "
                   "start (leave ~60 s under the machine's command limit to stop and pack).")
flags.DEFINE_float("start_before", None, "device: start no cell this many seconds after the "
                   "start; the call ends when the started cells finish (for cells too large "
                   "to carry to the next call, e.g. VGG-16-BN: a cut one is lost).")
flags.DEFINE_float("limit", None, "device: the call's hard limit in seconds from the start "
                   "(e.g. 560 under a 600 s command with ~40 s of set-up): unfinished cells "
                   "not packed 15 s before it are left out, so the files are written in time.")
flags.DEFINE_bool("mps", False, "device: run the cells under CUDA MPS, so that the cells "
                  "sharing a GPU run side by side (epsd_tf/sweep/mps.py).")
flags.DEFINE_integer("parallel", 8, "device: cell slots the sweeps share (8 on one H200).")
flags.DEFINE_list("phases", None, "device: only these phases of the plan (default: every "
                  "phase with cells left, in plan order).")
flags.DEFINE_bool("all", False, "plan: every phase with its status, not only the next.")
flags.DEFINE_list("sweep_flags", [], "plan, device: flags appended to every sweep "
                  "command, e.g. --parallel=5 (plan).")
flags.DEFINE_list("cells_per_hour", None, "plan: measured throughput, cells per device-hour, "
                  "for every family and per family (e.g. '130,vgg16=73': one H200 ran ~130 "
                  "ResNet-20 cells/hour with 8 at once under --mps, ~58 without, and "
                  "VGG-16-BN ~51 with 4 at once, ~73 with 7, under --mps); adds device "
                  "minutes per phase.")
flags.DEFINE_string("runs_root", "runs/study", "plan, device: the study root on the GPU "
                    "machine.")
flags.DEFINE_string("note", None, "collect: what ran the cells (GPU, JAX version, date, "
                    "--parallel), kept in <results>/sessions.json and shown in RESULTS.md.")
flags.DEFINE_string("keep_unfinished", None, "collect: also keep the call's cut cells (the "
                    "unfinished/ beside the --from tarball, as fetched) in this directory "
                    "for the next call's --unfinished, replacing the last call's; refused "
                    "if that would drop a cut cell neither committed nor in the new parts.")
flags.DEFINE_string("repeats", None, "collect: keep the cells that were committed already "
                    "and ran again (other metrics) under <results>/repeats/<tag>/; the report "
                    "compares each with its committed run.")
flags.DEFINE_list("cells", [], "supersede: committed cells to take out, as <family>/<cell> "
                  "globs (e.g. 'r20/epsd-*').")
flags.DEFINE_string("tag", None, "supersede: the name of the reason's directory, "
                    "<results>/superseded/<tag>/.")
flags.DEFINE_string("why", None, "supersede: why the cells are wrong (kept in WHY.md).")
flags.DEFINE_string("figures", None, "report: the figure directory "
                    "(default <results>/figures).")


def _say(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def _plan() -> int:
    from epsd_tf.study import plan
    statuses = plan.phase_status(FLAGS.results)
    minutes = [None] * len(statuses)
    if FLAGS.cells_per_hour:
        try:  # refused before anything is printed
            minutes = [plan.device_minutes(s["missing"], FLAGS.cells_per_hour)
                       for s in statuses]
        except ValueError as error:
            raise app.UsageError(str(error)) from error
    planned = sum(s["planned"] for s in statuses)
    done = sum(s["done"] for s in statuses)
    _say(f"# Study plan (epsd_tf/study/plan.py): {len(statuses)} phases, {planned} cells, "
         f"{done} committed in {FLAGS.results}")
    for phase, status, phase_minutes in zip(plan.PHASES, statuses, minutes):
        cost = "" if phase_minutes is None else f" (~{phase_minutes:.0f} device-min to go)"
        _say(f"#   {phase.name}: {status['done']}/{status['planned']} committed{cost}. "
             f"{phase.why}")
    phases = [p for p, s in zip(plan.PHASES, statuses) if FLAGS.all or s["missing"]]
    if not FLAGS.all:
        phases = phases[:1]
    if not phases:
        _say("# Every planned cell is committed: python tools/study.py report")
        return 0
    runs = FLAGS.runs_root
    _say("\n# On the GPU machine, from the repository root (a sweep skips restored and "
         "finished cells;\n# re-running a command resumes it):")
    _say(f"python tools/study.py restore --to={runs}")
    for phase in phases:
        _say(f"# phase {phase.name}")
        for sweep in phase.sweeps:
            _say(sweep.command(runs, FLAGS.sweep_flags))
    _say(f"python tools/study.py pack --from={runs} --to=$OUT/study_cells.tar.gz "
         "--unfinished_to=$OUT/unfinished")
    _say("# (a command stopped by its time limit: stop the sweeps with `timeout -s INT`, pack;"
         "\n#  the next call restores with --unfinished=<the carried unfinished parts> and the"
         "\n#  same sweep commands resume the cut cells from their last epoch)")
    _say("\n# Then here: commit the cells and re-create the write-up")
    _say(f"python tools/study.py collect --from=<fetched>/study_cells.tar.gz --to={FLAGS.results} "
         '--note="<GPU, JAX version, --parallel, session>"')
    _say("python tools/study.py report")
    return 0


def _supersede() -> int:
    from epsd_tf.study import archive
    if not FLAGS.cells or not FLAGS.tag or not FLAGS.why:
        raise app.UsageError("supersede needs --cells=<globs>, --tag=<name> and --why=<reason>")
    try:
        moved = archive.supersede(FLAGS.results, FLAGS.cells, FLAGS.tag, FLAGS.why)
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    _say(f"superseded {len(moved)} cells into {FLAGS.results}/{archive.SUPERSEDED}/"
         f"{FLAGS.tag}/ (the plan runs them again): {', '.join(moved)}")
    return 0


def _device() -> int:
    from epsd_tf.study import device, plan
    from epsd_tf.sweep import mps
    if not FLAGS.to or FLAGS.seconds is None:
        raise app.UsageError("device needs --to=<output directory> and --seconds=<deadline>")
    phases = plan.PHASES
    if FLAGS.phases:
        names = [p.name for p in plan.PHASES]
        unknown = [n for n in FLAGS.phases if n not in names]
        if unknown:
            raise app.UsageError(f"unknown phases {unknown}; valid: {names}")
        phases = [p for p in plan.PHASES if p.name in FLAGS.phases]
    if FLAGS.unfinished and not os.path.isdir(FLAGS.unfinished):
        raise app.UsageError(f"--unfinished={FLAGS.unfinished} is not a directory")
    try:
        # Bad arguments are refused before the MPS daemon starts (its check takes seconds).
        device.check_arguments(FLAGS.seconds, FLAGS.parallel, FLAGS.limit, FLAGS.start_before)
        with mps.daemon() if FLAGS.mps else contextlib.nullcontext():
            summary = device.run_call(FLAGS.runs_root, FLAGS.to, FLAGS.seconds, FLAGS.parallel,
                results_dir=FLAGS.results, unfinished=FLAGS.unfinished, phases=phases,
                sweep_flags=FLAGS.sweep_flags, limit=FLAGS.limit,
                start_before=FLAGS.start_before, say=_say)
    except (ValueError, mps.MpsError) as error:
        raise app.UsageError(str(error)) from error
    _say("cells left per phase: " + ", ".join(f"{k} {v}" for k, v in summary["left"].items()))
    return 0


def _main(argv):
    if len(argv) != 2 or argv[1] not in ACTIONS:
        raise app.UsageError(f"give one action of {ACTIONS}, got {argv[1:]}")
    action = argv[1]
    if action == "plan":
        return _plan()
    from epsd_tf.study import archive, carry, device
    if action == "device":
        return _device()
    if action == "supersede":
        return _supersede()
    if action == "restore":
        runs = FLAGS.to or "runs/study"
        parts = []
        if FLAGS.unfinished:  # checked before anything is copied
            parts = (carry.unfinished_parts(FLAGS.unfinished)
                     if os.path.isdir(FLAGS.unfinished) else [])
            if not parts:
                raise app.UsageError(f"--unfinished={FLAGS.unfinished} holds no "
                                     "unfinished-NN.tar.gz parts")
        copied = archive.restore(FLAGS.results, runs)
        _say(f"restored {len(copied)} committed cells into {runs}")
        if parts:
            outcome = carry.restore_unfinished(parts, runs)
            _say(f"restored {len(outcome['restored'])} unfinished cells to resume "
                 f"({', '.join(outcome['restored']) or 'none'}); kept "
                 f"{len(outcome['kept'])} already there")
    elif action == "pack":
        if not FLAGS["from"].value or not FLAGS.to:
            raise app.UsageError("pack needs --from=<study root> and --to=<tarball>")
        packed = archive.pack(FLAGS["from"].value, FLAGS.to)
        _say(f"packed {len(packed)} finished cells into {FLAGS.to}")
        if FLAGS.unfinished_to:
            outcome = carry.pack_unfinished(FLAGS["from"].value, FLAGS.unfinished_to,
                                              max_parts=FLAGS.unfinished_parts)
            _say(f"packed {len(outcome['packed'])} unfinished cells into "
                 f"{len(outcome['parts'])} parts in {FLAGS.unfinished_to}"
                 + (f"; left out (they start again): {', '.join(outcome['left_out'])}"
                    if outcome["left_out"] else ""))
    elif action == "collect":
        source = FLAGS["from"].value
        if not source:
            raise app.UsageError("collect needs --from=<tarball, study root or sweep root>")
        if FLAGS.keep_unfinished and not os.path.isfile(source):
            raise app.UsageError("--keep_unfinished needs --from=<a device call's "
                                 "study_cells.tar.gz>: its unfinished/ lies beside it")
        committed = FLAGS.to or FLAGS.results
        try:
            outcome = archive.collect(source, committed, _say, note=FLAGS.note,
                                      repeats=FLAGS.repeats)
            for key in outcome["new"]:
                logging.info("committed %s", key)
            if FLAGS.keep_unfinished:
                kept = carry.keep(os.path.join(os.path.dirname(source), device.UNFINISHED_DIR),
                                  FLAGS.keep_unfinished, committed)
                _say(f"kept {len(kept)} cut cells in {FLAGS.keep_unfinished} for the next "
                     f"call (--unfinished={FLAGS.keep_unfinished}): "
                     f"{', '.join(kept) or 'none'}")
        except ValueError as error:
            raise app.UsageError(str(error)) from error
    else:
        from epsd_tf.study import report
        written = report.write(FLAGS.results, FLAGS.to or "docs/RESULTS.md",
                               FLAGS.figures)
        _say("written: " + ", ".join(written))
    return 0


def main():
    """Entry point of `tools/study.py`."""
    cli.run_app(_main, __name__)


if __name__ == "__main__":
    main()
