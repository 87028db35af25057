"""The grid of a sweep: cells, their names, gin bindings, workdirs and commands.

A cell is one experiment, `<scorer>-<method>-s<sparsity>-seed<seed>`, run as
one `tools/run.py` process with its own workdir `<root>/cells/<cell>`. The
scorer `dense` means no pruning (`run.prune = None`) and ignores the
sparsities: one cell `dense-<method>-seed<seed>` per method and seed. Scorer
and method names are those of their registries (`pruning.scorers.SCORERS`,
`distill.methods.METHODS`).
"""

from __future__ import annotations

import dataclasses
import os
import sys

from epsd_tf.analysis.results import DENSE
from epsd_tf.distill import methods as methods_lib
from epsd_tf.pruning import scorers as scorers_lib

# `epsd-run` (epsd_tf/cli/run.py) run as a script: works wherever the package is installed.
RUN_TOOL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "cli", "run.py")
CELLS = "cells"


@dataclasses.dataclass(frozen=True)
class Cell:
    """One experiment of the grid; `sparsity` is 0.0 for a dense cell."""
    scorer: str
    method: str
    sparsity: float
    seed: int

    @property
    def name(self) -> str:
        if self.scorer == DENSE:
            return f"{DENSE}-{self.method}-seed{self.seed}"
        return f"{self.scorer}-{self.method}-s{self.sparsity!r}-seed{self.seed}"

    def bindings(self) -> list[str]:
        """The gin bindings `tools/run.py` gets for this cell."""
        if self.scorer == DENSE:
            prune = ["run.prune = None"]
        else:
            prune = ["run.prune = @prune_at_init", f"prune_at_init.scorer = '{self.scorer}'",
                     f"prune_at_init.sparsity = {self.sparsity!r}"]
        method = methods_lib.METHODS[self.method].__name__  # its gin name
        return prune + [f"run.method = @{method}()", f"run.seed = {self.seed}",
                        f"load.seed = {self.seed}"]

    def description(self) -> dict:
        """What `cell.json` holds (read back by `analysis.results.collect`)."""
        return {"name": self.name, **dataclasses.asdict(self)}


def _parse(values, kind, flag):
    try:
        parsed = [kind(v) for v in values]
    except ValueError as error:
        raise ValueError(f"--{flag}={','.join(values)}: {error}") from error
    if not parsed or len(set(parsed)) != len(parsed):
        raise ValueError(f"--{flag} must list distinct values, got {values}")
    return parsed


def make_grid(scorers, methods, sparsities, seeds) -> list[Cell]:
    """The cells, seed-major (a complete table for the first seed comes first).

    Raises:
        ValueError: an unknown scorer or method, a sparsity outside [0, 1), a
            non-integer seed, or an empty or repeated list.
    """
    scorers = _parse(scorers, str, "scorers")
    methods = _parse(methods, str, "methods")
    sparsities = _parse(sparsities, float, "sparsities")
    seeds = _parse(seeds, int, "seeds")
    for scorer in scorers:
        if scorer != DENSE and scorer not in scorers_lib.SCORERS:
            raise ValueError(f"Unknown scorer {scorer!r}; valid: "
                             f"{sorted(scorers_lib.SCORERS) + [DENSE]}")
    for method in methods:
        if method not in methods_lib.METHODS:
            raise ValueError(f"Unknown method {method!r}; valid: {sorted(methods_lib.METHODS)}")
    for sparsity in sparsities:
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity {sparsity} is outside [0, 1) (the fraction removed)")
    cells = []
    for seed in seeds:
        for method in methods:
            for scorer in scorers:
                levels = [0.0] if scorer == DENSE else sparsities
                cells += [Cell(scorer, method, sparsity, seed) for sparsity in levels]
    return cells


def cell_dir(root: str, cell: Cell | str) -> str:
    """The workdir of a cell (or of a cell name)."""
    return os.path.join(root, CELLS, cell if isinstance(cell, str) else cell.name)


def cell_command(cell: Cell, root: str, gin_files, gin_bindings,
                 run_tool: str = RUN_TOOL) -> list[str]:
    """The `tools/run.py` command of a cell (cell bindings last, so they win)."""
    return ([sys.executable, run_tool] + [f"--gin_file={f}" for f in gin_files] +
            [f"--gin_bindings={b}" for b in [*gin_bindings, *cell.bindings()]] +
            [f"--workdir={cell_dir(root, cell)}"])
