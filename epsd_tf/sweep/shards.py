"""`--shard i/n`: n sweep processes (hosts sharing a filesystem) split one grid.

Shard i runs the cells whose position in the grid is i modulo n (positions
in `make_grid` order, seed-major). The split is deterministic for the same
flags, balanced (shard sizes differ by at most one) and the union of shards
0/n … n-1/n is the grid with no overlap. Growing the grid by seeds appends
cells, so earlier cells keep their shard; other changes (a new scorer,
method or sparsity) move cells between shards, which is safe: finished
cells are skipped and the per-cell lock (`runner.py`) keeps two processes
from running one cell, even when shards overlap or are relaunched.

Each shard writes its progress to `<root>/shards/<i>-of-<n>.json` (only its
own file; `status.py` reads them all): host, pid, the whole grid and its
own cells, counts, ETA, and its phase (`running`, `finished`, `stopped`);
rewritten at least every `runner.HEARTBEAT` seconds while it runs.
"""

from __future__ import annotations

import os
import re
import socket
import time
from typing import Sequence

from epsd_tf import files

SHARDS = "shards"
_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str | None) -> tuple[int, int]:
    """`"i/n"` -> `(i, n)`; None or "" -> `(0, 1)` (the whole grid).

    Raises:
        ValueError: not two integers `i/n` with 0 <= i < n.
    """
    if text is None or not str(text).strip():
        return 0, 1
    match = _SHARD.match(str(text))
    if not match:
        raise ValueError(f"--shard={text!r}: expected i/n with 0 <= i < n, e.g. 0/4 "
                         "(SLURM: $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or index >= count:
        raise ValueError(f"--shard={text!r}: the index must be in 0..n-1 and n >= 1, "
                         f"got index {index} of {count}")
    return index, count


def select(cells: Sequence, index: int, count: int) -> list:
    """The cells of shard `index` of `count`: grid positions `index` modulo `count`."""
    return [cell for position, cell in enumerate(cells) if position % count == index]


def progress_path(root: str, index: int, count: int) -> str:
    return os.path.join(root, SHARDS, f"{index}-of-{count}.json")


def write_progress(root: str, index: int, count: int, *, grid: Sequence[str],
                   cells: Sequence[str], parallel: int, done: int, running: Sequence[str], failed: int, left: int,
                   eta_seconds: float | None, phase: str) -> None:
    """Writes this shard's progress file (atomically; only this shard writes it)."""
    files.write_json(progress_path(root, index, count), {
        "shard": f"{index}/{count}", "host": socket.gethostname(), "pid": os.getpid(),
        "parallel": parallel, "grid": list(grid), "cells": list(cells), "done": done, "running": list(running),
        "failed": failed, "left": left, "eta_seconds": eta_seconds, "phase": phase,
        "updated": time.time()})


def read_progress(root: str) -> list[dict]:
    """Every shard's progress record in `root`, ordered by shard."""
    directory = os.path.join(root, SHARDS)
    records = []
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        if name.endswith(".json"):
            try:
                record = files.read_json(os.path.join(directory, name))
            except (FileNotFoundError, ValueError):
                continue
            if isinstance(record, dict):
                records.append(record)
    return sorted(records, key=lambda r: tuple(int(x) for x in r["shard"].split("/"))[::-1])
