"""`sweep_state.json`: what happened to each cell, and what it was run with.

One entry per cell: `status` (`running`, `done`, `failed`, `interrupted`),
`attempts`, `started`, `elapsed`, `returncode` and `config` (gin files and
bindings). Whether a cell is finished is not the state's word but the cell
workdir's (`epsd_tf.files.is_finished`), so a state written before a crash
never hides a finished cell nor invents one.
"""

from __future__ import annotations

import os

from epsd_tf import files
from epsd_tf.sweep import grid

STATE = "sweep_state.json"


def cell_config(cell: grid.Cell, gin_files, gin_bindings) -> dict:
    """The configuration a cell is run with (compared on resume)."""
    return {"gin_files": list(gin_files), "gin_bindings": [*gin_bindings, *cell.bindings()]}


class SweepState:
    """The state file of the sweep in `root` (written atomically on every change)."""

    def __init__(self, root: str):
        self.root = root
        self.path = os.path.join(root, STATE)
        self.data = files.read_json(self.path) if os.path.exists(self.path) else {"cells": {}}

    def entry(self, cell: grid.Cell) -> dict:
        """The cell's entry (created empty); change it, then `save()`."""
        return self.data["cells"].setdefault(cell.name, {})

    def save(self) -> None:
        files.write_json(self.path, self.data)

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
