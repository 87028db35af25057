"""Runs one cell of a sweep: its own process, its own log, its own lock.

The cell is a `tools/run.py` process (a crash or OOM in one cell cannot kill
the sweep, and gin state never leaks between cells). Its output is appended
to `<cell>/run.log`, one `=== attempt N` header per attempt. While it runs the
sweep holds `<cell>/cell.lock` (`epsd_tf.files.locked`), so two sweeps sharing
a root never run the same cell at once; the run itself holds its workdir's
`run.lock`.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from typing import Callable

from epsd_tf import files
from epsd_tf.analysis import results
from epsd_tf.sweep import grid
from epsd_tf.sweep.state import SweepState

RUN_LOG = "run.log"
CELL_LOCK = "cell.lock"
TAIL_LINES = 40


def _log_tail(path: str, offset: int) -> str:
    with open(path, errors="replace") as f:
        f.seek(offset)
        return "\n".join(f.read().splitlines()[-TAIL_LINES:])


def _wait(process: subprocess.Popen) -> int:
    """Waits for the cell; if the sweep itself stops (Ctrl-C, SIGTERM), stops it too."""
    try:
        return process.wait()
    except BaseException:
        # No orphan keeps writing into the cell's workdir; its backup lets it resume.
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise


def run_cell(cell: grid.Cell, command: list[str], state: SweepState,
             report: Callable[[str], None]) -> str:
    """Runs one cell's process; returns `"done"`, `"failed"` or `"busy"`.

    `busy`: another process holds the cell's lock (it is running there); the
    cell is left alone. The state entry is updated before and after the run.
    """
    directory = grid.cell_dir(state.root, cell)
    os.makedirs(directory, exist_ok=True)
    try:
        with files.locked(os.path.join(directory, CELL_LOCK), purpose="sweep cell"):
            return _run_locked(cell, command, state, report, directory)
    except files.LockHeldError as error:
        report(f"{cell.name}: skipped, another sweep runs it ({error})")
        return "busy"


def _run_locked(cell, command, state, report, directory) -> str:
    files.write_json(os.path.join(directory, results.CELL_FILE), cell.description())
    entry = state.entry(cell)
    log_path = os.path.join(directory, RUN_LOG)
    entry.update(status="running", attempts=entry.get("attempts", 0) + 1,
                 started=time.time(), returncode=None)
    state.save()
    start = time.perf_counter()
    with open(log_path, "a") as log:
        offset = log.tell()
        log.write(f"=== attempt {entry['attempts']}: {shlex.join(command)}\n")
        log.flush()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            returncode = _wait(process)
        except BaseException:
            entry.update(status="interrupted", elapsed=time.perf_counter() - start)
            state.save()
            raise
    finished = returncode == 0 and files.is_finished(directory)
    entry.update(status="done" if finished else "failed", returncode=returncode,
                 elapsed=time.perf_counter() - start)
    state.save()
    if not finished:
        why = f"exit code {returncode}" if returncode else f"exit code 0 but no {files.METRICS}"
        report(f"--- {cell.name} failed ({why}); last lines of {log_path}:\n"
               f"{_log_tail(log_path, offset)}\n---")
    return "done" if finished else "failed"
