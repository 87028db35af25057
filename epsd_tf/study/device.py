"""One device call of the study: restore, run the plan's next sweeps until a deadline, pack.

A GPU machine is lent for commands of a few minutes, and nothing stays on it
between machines. `run_call` does one such command's worth of the study:

1. `archive.restore` the committed cells, and `carry.restore_unfinished` the
   cells the previous call cut (its `unfinished-NN.tar.gz` parts), into the
   sweep roots;
2. runs the plan's sweeps that still have unfinished cells, phase by phase in
   plan order, as `tools/sweep.py` processes that share `parallel` cell slots:
   each sweep gets as many slots as it has cells left (at most the free ones),
   and a sweep's slots go to the next sweep in the queue when it ends, or, with
   none queued, to a second process of a running sweep that has more cells left
   than slots (processes of one sweep share its root, each cell under its lock),
   so the GPU stays full across sweeps and phases; the sweeps holding cut cells
   start first, on a slot per cut cell, so every cut cell resumes at once
   (`assign_slots`);
3. at the deadline stops every sweep with SIGINT (its cells are marked
   interrupted and keep their last epoch's backup) and packs the finished cells
   (`study_cells.tar.gz`, to `tools/study.py collect`) and the unfinished ones
   (`unfinished/`, to carry into the next call, with the list of the cells
   this call finished: the next call refuses to start while any of them is
   not committed), plus the sweeps' logs and a summary (`study_call.json`):
   at most 8 files, as the device returns.

With `start_before` no cell starts after that many seconds, and the call ends
as soon as the started cells finish: for cells too large to carry to the next
call, which a deadline would only waste.

The same function runs on any machine (a CPU one runs the same sweeps,
slowly); the sweep tool and its flags are parameters, so tests use a stand-in.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from typing import Callable, Sequence

from absl import logging

from epsd_tf import files
from epsd_tf.study import archive, carry
from epsd_tf.study import plan as plan_lib
from epsd_tf.sweep import grid

POLL = 1.0          # seconds between looks at the running sweeps
STOP_GRACE = 60.0   # seconds a stopped sweep gets to mark its cells and exit
PACK_MARGIN = 15.0  # seconds kept, under `limit`, for the logs and the summary
# With the cells, the logs, the summary and the finished list: within 8 files.
MAX_UNFINISHED_PARTS = 4
CELLS_TARBALL = "study_cells.tar.gz"
LOGS_TARBALL = "sweep_logs.tar.gz"
SUMMARY = "study_call.json"
UNFINISHED_DIR = "unfinished"


def remaining(sweep: plan_lib.Sweep, runs_root: str) -> list[grid.Cell]:
    """The cells of `sweep` not finished under `runs_root`."""
    root = os.path.join(runs_root, sweep.family.name)
    return [c for c in sweep.cells() if not files.is_finished(grid.cell_dir(root, c))]


def queue(runs_root: str, phases: Sequence[plan_lib.Phase]) -> list[tuple[str, plan_lib.Sweep]]:
    """`(phase name, sweep)` of every sweep with cells left, in plan order."""
    return [(phase.name, sweep) for phase in phases for sweep in phase.sweeps
            if remaining(sweep, runs_root)]


def assign_slots(todo: Sequence[tuple[str, plan_lib.Sweep]], free: Sequence[int],
                 runs_root: str, running: Sequence[tuple[str, plan_lib.Sweep, int]] = (),
                 ) -> tuple[list[tuple], list[tuple[str, plan_lib.Sweep]]]:
    """Which sweeps start now, and on which of the `free` slots.

    First the queued sweeps holding cut cells (progress on disk,
    `files.has_progress`), each on a slot per cut cell, so that every cut cell
    resumes at once (each sweep starts its own first) wherever the plan queues
    it; then every queued sweep in plan order, on as many more slots as it has
    cells left; then, with slots still free, another process of each running
    sweep (`running`: `(phase, sweep, slots held)` per process) whose cells
    left outnumber the slots its processes hold: the sweeps share the root,
    each cell under its lock, so a slot that a finished sweep frees never idles
    while cells wait. Sweeps without cells left are dropped.

    Returns:
        `([(phase, sweep, slots, cells left)], the sweeps still queued)`.
    """
    free = list(free)
    waiting = []
    for phase, sweep in todo:
        left = remaining(sweep, runs_root)
        if left:
            root = os.path.join(runs_root, sweep.family.name)
            cut = sum(files.has_progress(grid.cell_dir(root, c)) for c in left)
            waiting.append((phase, sweep, len(left), cut))
    starts: dict[int, tuple] = {}  # position in `waiting` -> (phase, sweep, slots, left)
    for first_pass in (True, False):
        for position, (phase, sweep, left, cut) in enumerate(waiting):
            given = starts[position][2] if position in starts else []
            wanted = (cut if first_pass else left) - len(given)
            if free and wanted > 0:
                slots, free = free[:wanted], free[wanted:]
                starts[position] = (phase, sweep, given + slots, left)
    held: dict[int, list] = {}  # id(sweep) -> [phase, sweep, slots its processes hold]
    for phase, sweep, slots in running:
        held.setdefault(id(sweep), [phase, sweep, 0])[2] += slots
    extra = []
    for phase, sweep, holding in held.values():
        left = len(remaining(sweep, runs_root))
        if free and left > holding:
            slots, free = free[:left - holding], free[left - holding:]
            extra.append((phase, sweep, slots, left))
    queued = [(phase, sweep) for position, (phase, sweep, _, _) in enumerate(waiting)
              if position not in starts]
    return list(starts.values()) + extra, queued


class _Running:
    def __init__(self, phase: str, sweep: plan_lib.Sweep, slots: list[int], process,
                 log_path: str):
        self.phase, self.sweep, self.slots = phase, sweep, slots
        self.process, self.log_path = process, log_path
        self.started = time.monotonic()


def check_arguments(seconds: float, parallel: int, limit: float | None = None,
                    start_before: float | None = None) -> None:
    """Raises ValueError for a call `run_call` would refuse (before anything starts)."""
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds!r}")
    if start_before is not None and not 0 < start_before < seconds:
        raise ValueError(f"start_before={start_before!r} must be in (0, seconds={seconds!r}): "
                         "the time after which no cell starts, before the deadline")
    if limit is not None and not limit > seconds + PACK_MARGIN:
        raise ValueError(f"limit={limit!r} must exceed seconds + {PACK_MARGIN:.0f} "
                         f"= {seconds + PACK_MARGIN:.0f} (time to stop and pack)")
    if parallel < 1:
        raise ValueError(f"parallel must be >= 1, got {parallel!r}")


def run_call(runs_root: str, out_dir: str, seconds: float, parallel: int, *,
             results_dir: str = "docs/results/study", unfinished: str | None = None,
             phases: Sequence[plan_lib.Phase] = plan_lib.PHASES,
             sweep_flags: Sequence[str] = (), sweep_tool: str = plan_lib.SWEEP_TOOL,
             limit: float | None = None, start_before: float | None = None,
             say: Callable[[str], None] = logging.info) -> dict:
    """Runs the study for `seconds` on this machine and packs what it did (module doc).

    Args:
        runs_root: the study's sweep roots (`runs/study`).
        out_dir: where the packed cells, logs and summary go (`$OUT`).
        seconds: when to stop the sweeps, from the call's start; leave room
            under the machine's command limit for packing (about 30 s) and
            for the sweeps to stop (up to `STOP_GRACE`, usually seconds).
        parallel: cell slots shared by the sweeps (8 on one H200).
        results_dir: the committed cells, restored first.
        unfinished: a directory of the previous call's `unfinished-NN.tar.gz`.
        phases: the plan's phases to take sweeps from, in order.
        sweep_flags: flags added to every sweep command.
        sweep_tool: the sweep script.
        limit: the call's hard limit, from its start: unfinished cells not yet
            compressed `PACK_MARGIN` seconds before it are left out (they start
            again next call), so that the files are written in time. None: no limit.
        start_before: no cell (and no sweep) starts this many seconds after the
            call's start; the running cells go on until they finish or the
            deadline, and the call ends when they do. For cells too large to
            carry to the next call (VGG-16-BN): a cell cut at the deadline is
            lost, so start only those that can finish. None: start until the
            deadline.
        say: receives the progress lines.

    Returns:
        The summary also written to `out_dir/study_call.json`.

    Raises:
        ValueError: `seconds` or `parallel` not positive, `limit` not above
            `seconds` + `PACK_MARGIN`, or `start_before` not inside (0, `seconds`),
            before anything runs; or the call that wrote `unfinished` finished
            cells that are neither committed in `results_dir` nor finished under
            `runs_root` (`carry.not_collected`), before any cell runs.
    """
    check_arguments(seconds, parallel, limit, start_before)
    start = time.monotonic()
    deadline = start + seconds
    starts_end = deadline if start_before is None else start + start_before
    if start_before is not None:  # the sweeps' own start deadline, in their clock
        sweep_flags = [*sweep_flags, f"--start_until={time.time() + start_before:.1f}"]
    summary: dict = {"restored": archive.restore(results_dir, runs_root), "sweeps": []}
    missing = carry.not_collected(unfinished, runs_root) if unfinished else []
    if missing:
        raise ValueError(
            f"the call that cut the cells in {unfinished} also finished {len(missing)} cells "
            f"that are not committed in {results_dir} (e.g. {missing[:3]}): collect its "
            "study_cells.tar.gz first (tools/study.py collect), or they would run again "
            f"(to run them again, delete {os.path.join(unfinished, carry.FINISHED_LIST)})")
    os.makedirs(os.path.join(out_dir, "logs"), exist_ok=True)
    if unfinished:
        outcome = carry.restore_unfinished(carry.unfinished_parts(unfinished), runs_root)
        summary["resumed"], summary["resumed_in_place"] = outcome["restored"], outcome["kept"]
    in_place = summary.get("resumed_in_place", [])
    say(f"restored {len(summary['restored'])} committed cells, "
        f"{len(summary.get('resumed', []))} cut cells to resume"
        + (f" ({len(in_place)} more carried cells are here already, as far as or further "
           "than their parts: this machine ran the call that cut them)" if in_place else ""))
    todo = queue(runs_root, phases)
    say(f"{len(todo)} sweeps with cells left, in order: "
        + ", ".join(f"{phase}/{sweep.family.name}" for phase, sweep in todo))
    running: list[_Running] = []
    not_started: list = []
    failed: set[int] = set()  # the sweeps (`id`) a process of which ended with an error
    stopping = False

    def stop(signum, frame):  # the machine's own stop: end as at the deadline
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while (todo or running) and not stopping and time.monotonic() < deadline:
            for run in [r for r in running if r.process.poll() is not None]:
                running.remove(run)
                _record(summary, run, runs_root, start, say)
                if run.process.returncode:  # a failed cell: no more processes retry it
                    failed.add(id(run.sweep))
            if todo and time.monotonic() >= starts_end:
                say(f"[{time.monotonic() - start:.0f} s] start deadline: {len(todo)} sweeps "
                    "not started; the running cells finish")
                not_started, todo = todo, []
            free = sorted(set(range(parallel)).difference(*(r.slots for r in running)))
            starts = []
            if free and time.monotonic() < starts_end:
                starts, todo = assign_slots(todo, free, runs_root, [
                    (r.phase, r.sweep, len(r.slots)) for r in running
                    if id(r.sweep) not in failed])
            for phase, sweep, slots, left in starts:
                running.append(_start(phase, sweep, slots, parallel, runs_root, out_dir,
                                      sweep_flags, sweep_tool,
                                      len(summary["sweeps"]) + len(running)))
                say(f"[{time.monotonic() - start:.0f} s] {phase}: {sweep.family.name} "
                    f"sweep of {left} cells on slots {slots} of {parallel}")
            time.sleep(POLL)
        _stop(running, say)
        for run in running:
            _record(summary, run, runs_root, start, say)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if todo or running or stopping:
        summary["stopped"] = "deadline"
    elif start_before is not None and (not_started or any(r["left"] for r in summary["sweeps"])):
        summary["stopped"] = "start deadline; every started cell finished"
    else:
        summary["stopped"] = "every planned cell finished"
    summary["seconds"] = round(time.monotonic() - start, 1)
    summary.update(_pack(runs_root, out_dir,
                         None if limit is None else start + limit - PACK_MARGIN))
    summary["left"] = {phase.name: sum(len(remaining(s, runs_root)) for s in phase.sweeps)
                       for phase in phases}
    with open(os.path.join(out_dir, SUMMARY), "w") as f:
        json.dump(summary, f, indent=2)
    say(f"packed {len(summary['finished'])} finished cells, {len(summary['unfinished'])} "
        f"unfinished ({len(summary['left_out'])} left out) in {summary['seconds']} s")
    if summary["epochs_done"]:
        say("epochs done by the cut cells: " + ", ".join(
            f"{key} {n}" for key, n in sorted(summary["epochs_done"].items())))
    if summary["unfinished"]:
        say(f"carry {os.path.join(out_dir, UNFINISHED_DIR)} into the next call (--unfinished; "
            "`tools/study.py collect --keep_unfinished=DIR` keeps it in DIR); kept nowhere "
            "else, the cut cells' progress is lost with the checkout that fetched it")
    return summary


def _start(phase, sweep, slots, parallel, runs_root, out_dir, sweep_flags, sweep_tool, number):
    # The sweep's own slots of the machine's `parallel`-way division (`placement.parse_slots`):
    # sweeps running side by side never get the same cores or GPU memory.
    share = [f"--parallel={len(slots)}", f"--slots={','.join(map(str, slots))}/{parallel}"]
    # Two processes of one sweep skip each other's cells instead of waiting for them, and
    # a process with only such cells left ends and frees its slots for the next sweep.
    share.append("--nowait_busy")
    argv = [sys.executable, *sweep.argv(runs_root, [*sweep_flags, *share], sweep_tool)]
    log_path = os.path.join(out_dir, "logs", f"{number:02d}-{phase}-{sweep.family.name}.log")
    log = open(log_path, "w")
    log.write(" ".join(argv) + "\n")
    log.flush()
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    log.close()
    return _Running(phase, sweep, slots, process, log_path)


def _stop(running: list[_Running], say) -> None:
    """SIGINT to every sweep (they mark their cells interrupted), SIGKILL after the grace."""
    for run in running:
        if run.process.poll() is None:
            _signal(run.process, signal.SIGINT)
    if running:
        say(f"stopping {len(running)} sweeps")
    end = time.monotonic() + STOP_GRACE
    while time.monotonic() < end and any(r.process.poll() is None for r in running):
        time.sleep(0.2)
    for run in running:
        if run.process.poll() is None:
            logging.warning("sweep %s did not stop in %.0f s: killed", run.log_path, STOP_GRACE)
            _signal(run.process, signal.SIGKILL)
            run.process.wait()


def _signal(process, signum) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def _record(summary, run: _Running, runs_root, start, say) -> None:
    left = len(remaining(run.sweep, runs_root))
    summary["sweeps"].append({
        "phase": run.phase, "family": run.sweep.family.name, "slots": len(run.slots),
        "cells": len(run.sweep.cells()), "left": left, "returncode": run.process.returncode,
        "seconds": round(time.monotonic() - run.started, 1),
        "log": os.path.basename(run.log_path)})
    say(f"[{time.monotonic() - start:.0f} s] {run.phase}: {run.sweep.family.name} sweep "
        f"ended (exit {run.process.returncode}), {left} cells left")


def _pack(runs_root: str, out_dir: str, deadline: float | None) -> dict:
    finished, unfinished, progress = [], {"packed": [], "left_out": []}, {}
    if os.path.isdir(runs_root):
        finished = archive.pack(runs_root, os.path.join(out_dir, CELLS_TARBALL))
        unfinished = carry.pack_unfinished(runs_root, os.path.join(out_dir, UNFINISHED_DIR),
                                             max_parts=MAX_UNFINISHED_PARTS, deadline=deadline)
        carry.write_finished(os.path.join(out_dir, UNFINISHED_DIR), finished)
        # How far every cut cell got (packed or not): how long a family's cells take.
        progress = {key: carry.epochs_done(path)
                    for key, path in carry.unfinished_cells(runs_root).items()}
    logs = os.path.join(out_dir, "logs")
    with tarfile.open(os.path.join(out_dir, LOGS_TARBALL), "w:gz") as tar:
        for name in sorted(os.listdir(logs)):
            tar.add(os.path.join(logs, name), arcname=name)
    files.remove(logs)
    return {"finished": finished, "unfinished": unfinished["packed"],
            "left_out": unfinished["left_out"], "epochs_done": progress}
