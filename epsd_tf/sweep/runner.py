"""Runs one cell of a sweep: its own process, its own log, its own lock.

The cell is a `tools/run.py` process (a crash or OOM in one cell cannot kill
the sweep, and gin state never leaks between cells). Its output is appended
to `<cell>/run.log`, one `=== attempt N` header per attempt. While it runs the
sweep holds `<cell>/cell.lock` (`epsd_tf.files.acquire_lock`), so sweeps
sharing a root (workers, shards, hosts) never run the same cell at once; the
run itself holds its workdir's `run.lock`. The sweep touches `cell.lock`
every `HEARTBEAT` seconds; a lock from another host untouched for
`STALE_AFTER` seconds is stale (that host died) and is taken over, together
with the dead run's `run.lock`. On this host a lock whose pid is gone is stale.

A cell process dies with its sweep: on Linux it is started with the parent-death
signal `SIGTERM` (`prctl(PR_SET_PDEATHSIG)`), so a sweep killed outright
(`kill -9`, a command time limit) leaves no orphan training on the GPU; its
cells read as interrupted and the same command resumes them. Elsewhere (no
`prctl`) a SIGKILLed sweep's cells run to their end unwatched.

`CellRun` is one attempt, started and polled by the pool (`loop.py`);
`run_cell` runs one to the end.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from typing import Callable

from absl import logging

from epsd_tf import files
from epsd_tf.analysis import results
from epsd_tf.sweep import grid
from epsd_tf.sweep import state as state_lib
from epsd_tf.sweep.placement import Placement
from epsd_tf.sweep.state import SweepState

RUN_LOG = "run.log"
CELL_LOCK = "cell.lock"
TAIL_LINES = 40
HEARTBEAT = 30.0      # seconds between touches of a running cell's lock
STALE_AFTER = 300.0   # another host's lock untouched this long is stale
STOP_GRACE = 30.0     # seconds a stopped cell gets to exit before it is killed
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent():
    """A `Popen(preexec_fn=...)` step that makes the child get `SIGTERM` when
    this process dies (Linux `prctl(PR_SET_PDEATHSIG)`); None where unavailable.

    The death signal follows the thread that forks the child: cells are started
    from the sweep's main thread, which lives as long as the sweep.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # loaded here, not after fork
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def setup():
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the sweep died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)
    return setup


def _alive(pid: int) -> bool:
    """Whether process `pid` of this host still runs (a zombie does not)."""
    if not os.path.exists("/proc/self/stat"):  # no /proc: a zombie counts as alive
        return files.owner_alive({"host": socket.gethostname(), "pid": pid})
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _preexec(placement: Placement):
    """The child's set-up: its slot's CPU cores, then the parent-death signal."""
    steps = [step for step in (placement.preexec(), die_with_parent()) if step is not None]
    if not steps:
        return None

    def setup():
        for step in steps:
            step()
    return setup


def _log_tail(path: str, offset: int) -> str:
    with open(path, errors="replace") as f:
        f.seek(offset)
        return "\n".join(f.read().splitlines()[-TAIL_LINES:])


class CellRun:
    """One attempt at a cell: `start`, then `poll` until it returns, then `finish`.

    `stop` ends it early (Ctrl-C, SIGTERM): the process is terminated (killed
    after `STOP_GRACE` s); its backup lets the next attempt resume.
    """

    def __init__(self, cell: grid.Cell, command: list[str], state: SweepState,
                 placement: Placement | None = None):
        self.cell, self.command, self.state = cell, command, state
        self.placement = placement or Placement({}, None)
        self.directory = grid.cell_dir(state.root, cell)
        self.lock_path = os.path.join(self.directory, CELL_LOCK)
        self.log_path = os.path.join(self.directory, RUN_LOG)
        self.entry = state.entry(cell)
        self.process = None
        self.busy = ""  # why the cell could not be started: who holds its lock
        self.finished = False  # not started: another sweep finished it

    def start(self) -> bool:
        """Takes the cell's lock and starts its process; False if the lock is held
        (`busy` names the holder) or the cell turned out finished (`finished`)."""
        os.makedirs(self.directory, exist_ok=True)
        try:
            self.owner = files.acquire_lock(self.lock_path, purpose="sweep cell",
                                            stale_after=STALE_AFTER)
        except files.LockHeldError as error:
            self.busy = str(error)
            return False
        if files.is_finished(self.directory):  # by the sweep that just released the lock
            files.release_lock(self.lock_path, self.owner)
            self.finished = True
            return False
        try:
            self._refresh_entry()
            # Wall time of the earlier attempts (entries written before `elapsed_total`
            # existed hold only the last attempt's `elapsed`).
            self.earlier = float(self.entry.get("elapsed_total", self.entry.get("elapsed", 0.0)))
            self._clear_dead_run_lock()
            files.write_json(os.path.join(self.directory, results.CELL_FILE),
                             self.cell.description())
            self.entry.update(status="running", attempts=self.entry.get("attempts", 0) + 1,
                              started=time.time(), returncode=None,
                              host=socket.gethostname(), pid=os.getpid())
            self.state.save_cell(self.cell)
            self.log = open(self.log_path, "a")
            self.offset = self.log.tell()
            self.log.write(f"=== attempt {self.entry['attempts']}: "
                           f"{shlex.join(self.command)}\n")
            self.log.flush()
            self.start_time = time.perf_counter()
            self.touched = time.monotonic()
            self.process = subprocess.Popen(
                self.command, stdout=self.log, stderr=subprocess.STDOUT,
                env=self.placement.apply(os.environ), preexec_fn=_preexec(self.placement))
            self.entry["cell_pid"] = self.process.pid
            self.state.save_cell(self.cell)
        except BaseException:
            if hasattr(self, "log"):
                self.log.close()
            files.release_lock(self.lock_path, self.owner)
            raise
        return True

    def _refresh_entry(self) -> None:
        """Re-reads the cell's entry from its file (another sweep may have run it since
        this one started; holding the lock, this sweep is now its only writer), and
        waits for a process the dead sweep left running to exit (it got SIGTERM
        when its sweep died, `die_with_parent`)."""
        recorded = state_lib.read_cell(self.state.root, self.cell)
        if recorded is not None:
            config = self.entry.get("config")
            self.entry.clear()
            self.entry.update(recorded, **({"config": config} if config else {}))
        pid = self.entry.get("cell_pid")
        if (self.entry.get("status") != "running" or not isinstance(pid, int)
                or self.entry.get("host") != socket.gethostname()):
            return
        deadline = time.monotonic() + STOP_GRACE
        while _alive(pid):
            if time.monotonic() > deadline:
                logging.warning("process %d of the dead sweep's attempt at %s is still "
                                "running after %.0f s; starting the cell anyway",
                                pid, self.cell.name, STOP_GRACE)
                return
            time.sleep(0.05)

    def _clear_dead_run_lock(self) -> None:
        """Removes a `run.lock` left by a run on another host: holding the cell's lock,
        this sweep is the only one that may run the cell, so that run is dead."""
        run_lock = os.path.join(self.directory, files.LOCK)
        holder = files.lock_owner(run_lock)
        if holder is not None and holder.get("host") != socket.gethostname():
            logging.warning("removing %s of a dead run on host %r (this sweep now holds %s)",
                            run_lock, holder.get("host"), self.lock_path)
            files.remove(run_lock)

    def poll(self) -> int | None:
        """The exit code once the process ended, else None (and the lock's heartbeat)."""
        if time.monotonic() - self.touched >= HEARTBEAT:
            files.touch_lock(self.lock_path, self.owner)
            self.touched = time.monotonic()
        return self.process.poll()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start_time

    def finish(self, report: Callable[[str], None]) -> str:
        """Records the ended attempt and releases the lock; returns "done" or "failed"."""
        returncode = self.process.wait()
        self.log.close()
        finished = returncode == 0 and files.is_finished(self.directory)
        elapsed = self.elapsed
        self.entry.update(status="done" if finished else "failed", returncode=returncode,
                          elapsed=elapsed, elapsed_total=self.earlier + elapsed)
        self.state.save_cell(self.cell)
        files.release_lock(self.lock_path, self.owner)
        if not finished:
            why = f"exit code {returncode}" if returncode else f"exit code 0 but no {files.METRICS}"
            report(f"--- {self.cell.name} failed ({why}); last lines of {self.log_path}:\n"
                   f"{_log_tail(self.log_path, self.offset)}\n---")
        return "done" if finished else "failed"

    def stop(self) -> None:
        """Stops the process (no orphan keeps writing into the workdir); `interrupted`."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        elapsed = self.elapsed
        self.entry.update(status="interrupted", elapsed=elapsed,
                          elapsed_total=self.earlier + elapsed)
        self.state.save_cell(self.cell)
        files.release_lock(self.lock_path, self.owner)


def run_cell(cell: grid.Cell, command: list[str], state: SweepState,
             report: Callable[[str], None], placement: Placement | None = None) -> str:
    """Runs one cell's process to its end; returns `"done"`, `"failed"` or `"busy"`.

    `busy`: another process holds the cell's lock (it is running there); the
    cell is left alone. The cell's state is updated before and after the run.
    """
    run = CellRun(cell, command, state, placement)
    if not run.start():
        if run.finished:
            report(f"{cell.name}: done (finished elsewhere meanwhile, skipped)")
            return "done"
        report(f"{cell.name}: skipped, another sweep runs it ({run.busy})")
        return "busy"
    try:
        while run.poll() is None:
            time.sleep(0.2)
    except BaseException:
        run.stop()
        raise
    return run.finish(report)
