"""The pool of a sweep: up to N cell processes at once, each in its own slot.

A process pool and nothing more: the loop hands the next unfinished cell
to a free slot (`runner.CellRun` takes the cell's lock), polls the running
cells, and records each as it ends. Slot k's devices and cores are
`placement.placements(...)[k]`.

A cell whose lock another live sweep holds is `busy`. With `wait_busy` (the
default) the pool waits for it once it has nothing else to start: every
`BUSY_POLL` seconds a free slot tries the cell again, which counts it done
if the other sweep finished it, and runs it if that sweep stopped or died
without finishing it (its lock released, or stale: `files.acquire_lock`).
Without `wait_busy` a busy cell is left to the other sweep at once.
Ctrl-C or SIGTERM (raised in the loop) stops every running cell; their
backups let the next sweep resume them. With `start_until` (a Unix time) no
cell starts after it: the cells not started by then are `not_run`, the
running ones finish (a call of limited length whose cells cannot be carried
to the next one ends when its last cell does, instead of cutting cells it
would lose).
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

from epsd_tf.sweep import grid, shards
from epsd_tf.sweep.placement import Placement
from epsd_tf.sweep.runner import HEARTBEAT, CellRun
from epsd_tf.sweep.state import SweepState, cell_config

POLL = 0.2       # seconds between polls of the running cells
BUSY_POLL = 2.0  # seconds between tries of a cell another sweep holds


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Pool:
    """Runs `todo` (pairs of grid position and cell) in `len(slots)` slots."""

    def __init__(self, root: str, state: SweepState, gin_files, gin_bindings, *,
                 slots: Sequence[Placement], run_tool: str, report: Callable[[str], None],
                 max_failures: int | None, total: int, durations: list[float],
                 shard: tuple[int, int] = (0, 1), shard_cells: Sequence[str] = (),
                 grid_cells: Sequence[str] = (), wait_busy: bool = True,
                 start_until: float | None = None):
        self.root, self.state = root, state
        self.gin_files, self.gin_bindings = list(gin_files), list(gin_bindings)
        self.slots, self.run_tool, self.report = list(slots), run_tool, report
        self.max_failures, self.total, self.durations = max_failures, total, durations
        self.shard, self.shard_cells = shard, list(shard_cells)
        self.grid_cells = list(grid_cells)
        self.running: dict[int, tuple[int, CellRun]] = {}  # slot -> (position, run)
        self.wait_busy, self.start_until = wait_busy, start_until
        self.waiting: list[tuple[float, int, grid.Cell]] = []  # busy: (next try, position, cell)
        self.outcome = {"done": [], "failed": [], "busy": [], "not_run": [], "skipped": []}
        self.left = 0
        self.sweep_start = time.perf_counter()

    def run(self, todo: Sequence[tuple[int, grid.Cell]], skipped: Sequence[str] = ()) -> dict:
        """Runs every cell of `todo`; returns the cell names by outcome.

        `skipped`: the cells finished before (counted as done in the progress).
        """
        self.outcome["skipped"] = list(skipped)
        queue = list(todo)
        self.left = len(queue)
        self._progress("running")
        try:
            while queue or self.running or self.waiting:
                if self.max_failures is not None and \
                        len(self.outcome["failed"]) >= self.max_failures:
                    self._start_no_more(queue, waiting_as="busy")
                if (queue or self.waiting) and self.start_until is not None and \
                        time.time() >= self.start_until:
                    self.report(f"start deadline passed: {len(queue) + len(self.waiting)} "
                                "cells not started; the running ones finish")
                    self._start_no_more(queue, waiting_as="not_run")
                while queue and len(self.running) < len(self.slots):
                    self._launch(*queue.pop(0))
                if not queue:
                    self._retry_busy()
                time.sleep(POLL if self.running or self.waiting else 0)
                if time.monotonic() - self.written >= HEARTBEAT:
                    self._progress("running")  # the shard's heartbeat, for --status
                for slot, (position, run) in list(self.running.items()):
                    if run.poll() is not None:
                        del self.running[slot]
                        self._record(position, run, run.finish(self.report))
        except BaseException:
            self._stop_all()
            self._progress("stopped")
            raise
        self._progress("finished")
        return self.outcome

    def _start_no_more(self, queue: list, waiting_as: str) -> None:
        """Files the queued cells as `not_run` and the busy ones as `waiting_as`, and
        empties both lists (the running cells go on)."""
        self.outcome["not_run"] += [cell.name for _, cell in queue]
        self.outcome[waiting_as] += [cell.name for _, _, cell in self.waiting]
        self.left -= len(queue) + len(self.waiting)
        queue.clear()
        self.waiting = []

    def _retry_busy(self) -> None:
        """Tries again, in free slots, the busy cells whose next try is due."""
        now = time.monotonic()
        due = sorted(item for item in self.waiting if item[0] <= now)
        for item in due:
            if len(self.running) >= len(self.slots):
                return
            self.waiting.remove(item)
            self._launch(item[1], item[2], retry=True)

    def _launch(self, position: int, cell: grid.Cell, retry: bool = False) -> None:
        prefix = f"[{position}/{self.total}] {cell.name}"
        if self.state.is_finished(cell):  # finished meanwhile, by another shard
            self._finished_elsewhere(prefix, cell)
            return
        slot = min(set(range(len(self.slots))) - set(self.running))
        self.state.entry(cell)["config"] = cell_config(cell, self.gin_files, self.gin_bindings)
        command = grid.cell_command(cell, self.root, self.gin_files, self.gin_bindings,
                                    self.run_tool)
        run = CellRun(cell, command, self.state, self.slots[slot])
        if not run.start():
            if run.finished:
                self._finished_elsewhere(prefix, cell)
            elif self.wait_busy:
                self.waiting.append((time.monotonic() + BUSY_POLL, position, cell))
                if not retry:
                    self.report(f"{prefix}: busy, another sweep runs it ({run.busy}); "
                                "waiting for it once this sweep's other cells are started")
            else:
                self.outcome["busy"].append(cell.name)
                self.left -= 1
                self.report(f"{cell.name}: skipped, another sweep runs it ({run.busy})")
            return
        self.running[slot] = (position, run)
        where = f" in slot {slot}" if len(self.slots) > 1 else ""
        self.report(f"{prefix}: running{where} (sweep time "
                    f"{clock(time.perf_counter() - self.sweep_start)})")
        self._progress("running")

    def _finished_elsewhere(self, prefix: str, cell: grid.Cell) -> None:
        self.outcome["skipped"].append(cell.name)
        self.left -= 1
        self.report(f"{prefix}: done (finished elsewhere meanwhile, skipped)")

    def _record(self, position: int, run: CellRun, result: str) -> None:
        self.outcome[result].append(run.cell.name)
        self.left -= 1
        if result == "done":
            self.durations.append(run.entry["elapsed"])
        done = len(self.outcome["done"]) + len(self.outcome["skipped"])
        shard = f" (shard {self.shard[0]}/{self.shard[1]})" if self.shard[1] > 1 else ""
        self.report(f"[{position}/{self.total}] {run.cell.name}: {result} in "
                    f"{clock(run.entry['elapsed'])}; {done} done, "
                    f"{len(self.outcome['failed'])} failed, {len(self.running)} running, "
                    f"{self.left} to go, ETA {self._eta_text()}{shard}")
        self._progress("running")

    def _eta(self) -> float | None:
        """Seconds left: the cells not yet ended × the mean cell time ÷ the slots."""
        if not self.durations:
            return None
        mean = sum(self.durations) / len(self.durations)
        return self.left * mean / len(self.slots)

    def _eta_text(self) -> str:
        eta = self._eta()
        return "unknown" if eta is None else clock(eta)

    def _progress(self, phase: str) -> None:
        self.written = time.monotonic()
        done = len(self.outcome["done"]) + len(self.outcome["skipped"])
        shards.write_progress(
            self.root, *self.shard, grid=self.grid_cells, cells=self.shard_cells, parallel=len(self.slots),
            done=done, running=[run.cell.name for _, run in self.running.values()],
            failed=len(self.outcome["failed"]), left=self.left, eta_seconds=self._eta(),
            phase=phase)

    def _stop_all(self) -> None:
        """Terminates every running cell at once, then waits for each."""
        runs = [run for _, run in self.running.values()]
        for run in runs:
            if run.process.poll() is None:
                run.process.terminate()
        for run in runs:
            run.stop()
        self.running.clear()
