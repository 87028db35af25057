"""A sweep's state: what happened to each cell, and what it was run with.

The truth is one `cell_state.json` per cell, in the cell's directory, written
only by the process holding the cell's lock (so several workers and several
shards sharing a root never write the same file at once). Its entry:
`status` (`running`, `done`, `failed`, `interrupted`), `attempts`,
`started`, `elapsed` (the last attempt's wall seconds), `elapsed_total` (every
attempt's, also across machines when the cell's directory travels),
`returncode`, `host`, `pid` (of the sweep), `cell_pid`
(of the cell's process) and `config` (gin files and bindings).

`sweep_state.json` in the root is a derived view, `{"cells": {name: entry}}`
over every cell directory, recomputed from the cell files after each change
and never merged by hand; readers of older sweeps keep working (a root state
written before per-cell files existed still supplies the entries of cells
that have no file). Whether a cell is finished is not the state's word but
the cell workdir's (`epsd_tf.files.is_finished`), so a state written before
a crash never hides a finished cell nor invents one.
"""

from __future__ import annotations

import os

from epsd_tf import files
from epsd_tf.sweep import grid

STATE = "sweep_state.json"
CELL_STATE = "cell_state.json"


def cell_config(cell: grid.Cell, gin_files, gin_bindings) -> dict:
    """The configuration a cell is run with (compared on resume)."""
    return {"gin_files": list(gin_files), "gin_bindings": [*gin_bindings, *cell.bindings()]}


def _read(path: str) -> dict | None:
    try:
        value = files.read_json(path)
    except (FileNotFoundError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def read_cell(root: str, cell: grid.Cell) -> dict | None:
    """The cell's entry as its `cell_state.json` holds it; None if it has none."""
    return _read(os.path.join(grid.cell_dir(root, cell), CELL_STATE))


def read_entries(root: str) -> dict:
    """`{cell name: entry}` of every cell under `root`, from the cell files (the truth).

    Cells without a `cell_state.json` keep the entry of a root
    `sweep_state.json` written by an older sweep, if any.
    """
    legacy = _read(os.path.join(root, STATE)) or {}
    entries = {name: entry for name, entry in legacy.get("cells", {}).items()
               if isinstance(entry, dict)}
    cells_dir = os.path.join(root, grid.CELLS)
    names = sorted(os.listdir(cells_dir)) if os.path.isdir(cells_dir) else []
    for name in names:
        entry = _read(os.path.join(cells_dir, name, CELL_STATE))
        if entry is not None:
            entries[name] = entry
    return entries


class SweepState:
    """The state of the sweep in `root`: per-cell files plus the derived root view."""

    def __init__(self, root: str):
        self.root = root
        self.path = os.path.join(root, STATE)
        self.data = {"cells": read_entries(root)}

    def entry(self, cell: grid.Cell) -> dict:
        """The cell's entry (created empty); change it, then `save_cell(cell)`."""
        return self.data["cells"].setdefault(cell.name, {})

    def save_cell(self, cell: grid.Cell) -> None:
        """Writes the cell's entry to its `cell_state.json`, then refreshes the view."""
        files.write_json(os.path.join(grid.cell_dir(self.root, cell), CELL_STATE),
                         self.entry(cell))
        self.save()

    def save(self) -> None:
        """Rewrites `sweep_state.json` from the cell files (other workers' cells included)."""
        files.write_json(self.path, {"cells": read_entries(self.root)})

    def is_finished(self, cell: grid.Cell) -> bool:
        return files.is_finished(grid.cell_dir(self.root, cell))

    def check_finished_cells(self, cells, gin_files, gin_bindings) -> None:
        """Refuses to reuse a finished cell that was run with another configuration.

        Raises:
            ValueError: naming the cell, both configurations and what to do.
        """
        for cell in cells:
            recorded = self.data["cells"].get(cell.name, {}).get("config")
            expected = cell_config(cell, gin_files, gin_bindings)
            if self.is_finished(cell) and recorded is not None and recorded != expected:
                raise ValueError(
                    f"cell {cell.name} in {self.root} finished with {recorded}, but this "
                    f"sweep would run it with {expected}. Use a new --root, or delete "
                    f"{grid.cell_dir(self.root, cell)} to run it again.")
