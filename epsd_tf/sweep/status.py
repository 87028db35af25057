"""`tools/sweep.py --status`: the state of a whole grid, read from its root; runs nothing.

The grid is every cell of the grids the shards recorded
(`shards/<i>-of-<n>.json`) plus every cell directory. A cell is:

* `done`: its workdir holds `metrics.json` (`files.is_finished`);
* `running`: its `cell.lock` is held by a live owner (same host: the pid is
  alive; another host: the heartbeat is fresher than `runner.STALE_AFTER`),
  shown with that owner's host, pid and start time;
* `failed` or `interrupted`: its last attempt ended so (`cell_state.json`),
  or it was `running` and its owner is gone;
* `pending`: not started yet.

The ETA is the cells not done × the mean time of the finished ones ÷ the
slots of the shards still running (`parallel` of each).
"""

from __future__ import annotations

import os
import socket
import time

from epsd_tf import files
from epsd_tf.sweep import grid, shards
from epsd_tf.sweep.pool import clock
from epsd_tf.sweep.runner import CELL_LOCK, STALE_AFTER
from epsd_tf.sweep.state import read_entries

STATUSES = ("done", "running", "failed", "interrupted", "pending")


def _cell_status(root: str, name: str, entry: dict) -> tuple[str, str]:
    directory = grid.cell_dir(root, name)
    if files.is_finished(directory):
        return "done", f"in {clock(entry['elapsed'])}" if "elapsed" in entry else ""
    lock = os.path.join(directory, CELL_LOCK)
    owner = files.lock_owner(lock)
    if owner is not None:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("since", 0)))
        who = f"host {owner.get('host')}, pid {owner.get('pid')}, since {since}"
        if files.owner_alive(owner) and not files.heartbeat_lost(lock, owner, STALE_AFTER):
            return "running", who
        return "interrupted", f"stale lock of {who}"
    status = entry.get("status")
    if status in ("failed", "interrupted"):
        code = entry.get("returncode")
        return status, f"exit code {code}" if code is not None else ""
    if status == "running":  # its sweep died without a lock file (e.g. removed by hand)
        return "interrupted", "owner gone"
    return "pending", ""


def _phase(record: dict) -> str:
    """A shard's phase; `running` only while its process lives (same host: pid;
    another host: progress written within `STALE_AFTER`), else `gone`."""
    phase = record.get("phase", "unknown")
    if phase != "running":
        return phase
    alive = files.owner_alive(record)
    if record.get("host") != socket.gethostname():
        alive = time.time() - record.get("updated", 0) <= STALE_AFTER
    return "running" if alive else "gone"


def grid_status(root: str) -> dict:
    """`{"cells": {name: (status, detail)}, "totals", "shards", "eta_seconds"}`.

    Raises:
        FileNotFoundError: `root` is not a directory.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"--root={root!r} is not a sweep directory (it does not exist)")
    entries = read_entries(root)
    records = [dict(r, phase=_phase(r)) for r in shards.read_progress(root)]
    names = []
    for record in records:
        names += [n for n in record.get("grid", record.get("cells", [])) if n not in names]
    cells_dir = os.path.join(root, grid.CELLS)
    for name in sorted(os.listdir(cells_dir)) if os.path.isdir(cells_dir) else []:
        if name not in names and os.path.isdir(os.path.join(cells_dir, name)):
            names.append(name)
    cells = {name: _cell_status(root, name, entries.get(name, {})) for name in names}
    totals = {status: sum(s == status for s, _ in cells.values()) for status in STATUSES}
    durations = [entries[n]["elapsed"] for n, (s, _) in cells.items()
                 if s == "done" and "elapsed" in entries.get(n, {})]
    active = [r for r in records if r.get("phase") == "running"]
    slots = sum(r.get("parallel", 1) for r in active)
    left = len(cells) - totals["done"]
    eta = (left * sum(durations) / len(durations) / slots) if durations and slots else None
    return {"cells": cells, "totals": totals, "shards": records, "eta_seconds": eta}


def format_status(status: dict) -> list[str]:
    """The report lines: one per cell, the totals, one per shard, the ETA."""
    lines = [f"{name}: {state}{' (' + detail + ')' if detail else ''}"
             for name, (state, detail) in status["cells"].items()]
    totals = status["totals"]
    lines.append(f"{len(status['cells'])} cells: " +
                 ", ".join(f"{totals[s]} {s}" for s in STATUSES))
    now = time.time()
    for record in status["shards"]:
        mine = record.get("cells", [])
        done = sum(status["cells"].get(n, ("",))[0] == "done" for n in mine)
        eta = record.get("eta_seconds")
        eta_text = "" if record.get("phase") != "running" or eta is None else \
            f", ETA {clock(max(0.0, eta - (now - record.get('updated', now))))}"
        lines.append(f"shard {record['shard']} ({record.get('phase')}, host "
                     f"{record.get('host')}, pid {record.get('pid')}, parallel "
                     f"{record.get('parallel')}): {done}/{len(mine)} done, "
                     f"{len(record.get('running', []))} running{eta_text}")
    eta = status["eta_seconds"]
    if totals["done"] == len(status["cells"]):
        lines.append("all cells done")
    elif not any(r.get("phase") == "running" for r in status["shards"]):
        lines.append("ETA unknown: no shard is running (run the sweep to resume)")
    else:
        lines.append(f"ETA {clock(eta) if eta is not None else 'unknown (no cell done yet)'}")
    return lines
