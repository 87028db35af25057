"""Sweep throughput (issue 15): cells/hour of `tools/sweep.py --parallel N` on one machine.

For each N (default 1, 4, 8) a fresh sweep root runs `cells_per_slot × N`
short cells (the study's ResNet-20 Fashion-MNIST cell, `gin/study_resnet20.gin`,
cut to one epoch: EPSD scoring at 90 % sparsity, then DLB), N at once through
`epsd_tf.sweep.run_sweep`, exactly as `tools/sweep.py --parallel=N` does:
each cell is its own `tools/run.py` process, pinned by `sweep/placement.py`.
The figure is cells/hour = cells finished / wall seconds × 3600, and its
ratio to N = 1. With `--rounds` > 1 the order of the N alternates per round
(forward, then reversed) and each figure is the median over rounds, so a
drifting machine load affects every N alike (tools/bench.py's rule).

Run on a GPU box (TF-free on JAX; every cell's process is a full training run):

  KERAS_BACKEND=jax PYTHONPATH=. python tools/benchmarks/sweep_throughput.py \
      --output=runs/sweep_throughput.json                 # N = 1, 4, 8; ~10 min on an H200

`--mps=both` measures every N with and without CUDA MPS (`epsd_tf/sweep/mps.py`,
as `tools/sweep.py --mps`), the two in alternating order within each round
(off first in even rounds), and reports per N the median over rounds of the
per-round ratio of cells/hour with MPS to without (`mps_speedup`):

  KERAS_BACKEND=jax PYTHONPATH=. python tools/benchmarks/sweep_throughput.py \
      --parallel=8 --mps=both --rounds=2 --cells_per_slot=1 \
      --gin_bindings="run.mean_jsv_examples = 0"           # ~8 min on an H200

`--smoke`: `gin/smoke.gin` cells (synthetic data, tiny CNN) with N = 1, 2 on
CPU, to check that it runs (a test does, on JAX without TensorFlow).
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags, logging

from epsd_tf import backends, files, sweep
from epsd_tf.sweep import mps as mps_lib
from epsd_tf.sweep import placement, state

FULL = {"base_gin": ["gin/study_resnet20.gin"], "parallel": (1, 4, 8),
        "bindings": ["run.epochs = 1", "run.verbose = 0"]}
SMOKE = {"base_gin": ["gin/smoke.gin"], "parallel": (1, 2),
         "bindings": ["run.epochs = 1", "run.verbose = 0", "load.num_examples = 128",
                      "load.num_test = 64"]}
CELL = {"scorers": ["epsd"], "methods": ["dlb"], "sparsities": ["0.9"]}
MPS_MODES = {"off": (False,), "on": (True,), "both": (False, True)}


def measure(parallel: int, root: str, base_gin, bindings, cells_per_slot: int,
            gpus: int | None) -> dict:
    """Runs `cells_per_slot × parallel` cells `parallel` at once in a fresh `root`."""
    seeds = [str(seed) for seed in range(cells_per_slot * parallel)]
    cells = sweep.make_grid(CELL["scorers"], CELL["methods"], CELL["sparsities"], seeds)
    lines = []
    start = time.perf_counter()
    outcome = sweep.run_sweep(cells, root, base_gin, bindings, parallel=parallel, gpus=gpus,
                              report=lines.append)
    wall = time.perf_counter() - start
    entries = state.read_entries(root)
    cell_seconds = [entries[c]["elapsed"] for c in outcome["done"]]
    result = {"parallel": parallel, "cells": len(cells), "done": len(outcome["done"]),
              "failed": outcome["failed"], "wall_seconds": wall,
              "cells_per_hour": len(outcome["done"]) / wall * 3600.0,
              "mean_cell_seconds": statistics.mean(cell_seconds) if cell_seconds else None,
              "slots": [line for line in lines if line.startswith("slot ")]}
    logging.info("--parallel=%d: %d/%d cells in %.1f s: %.1f cells/hour", parallel,
                 result["done"], len(cells), wall, result["cells_per_hour"])
    return result


def run(smoke: bool = False, parallel=None, cells_per_slot: int = 2, rounds: int = 1,
        gpus: int | None = None, workdir: str | None = None, gin_bindings=(),
        mps: str = "off") -> dict:
    """Measures every N; returns the JSON-ready results (per N: the median over rounds).

    `gin_bindings` are appended to the cell's (e.g. `run.mean_jsv_examples = 0`
    for a cheaper cell). `mps`: "off", "on" (every sweep under CUDA MPS) or
    "both" (each N both ways, paired within each round; module doc).

    Raises:
        ValueError: an N < 1, `cells_per_slot` or `rounds` < 1, or an unknown
            `mps` (before any work).
    """
    if mps not in MPS_MODES:
        raise ValueError(f"mps={mps!r}: valid: {sorted(MPS_MODES)}")
    setting = SMOKE if smoke else FULL
    setting = dict(setting, bindings=list(setting["bindings"]) + list(gin_bindings))
    parallel = tuple(parallel or setting["parallel"])
    if not parallel or min(parallel) < 1 or cells_per_slot < 1 or rounds < 1:
        raise ValueError(f"parallel={parallel}, cells_per_slot={cells_per_slot}, "
                         f"rounds={rounds}: each must be >= 1")
    detected = placement.detect_gpus(gpus)
    scratch = workdir or tempfile.mkdtemp(prefix="sweep_throughput.")
    modes = MPS_MODES[mps]
    per_key = {(n, on): [] for n in parallel for on in modes}
    try:
        for round_index in range(rounds):
            forward = round_index % 2 == 0
            for n in parallel if forward else parallel[::-1]:
                for on in modes if forward else modes[::-1]:
                    root = os.path.join(scratch, f"round{round_index}",
                                        f"parallel{n}" + ("-mps" if on else ""))
                    with mps_lib.daemon() if on else contextlib.nullcontext():
                        result = measure(n, root, setting["base_gin"], setting["bindings"],
                                         cells_per_slot, gpus)
                    per_key[(n, on)].append({**result, "mps": on})
    finally:
        if workdir is None:
            shutil.rmtree(scratch, ignore_errors=True)
    results = []
    for (n, on), runs in per_key.items():
        results.append({**runs[0], "cells_per_hour": statistics.median(
            r["cells_per_hour"] for r in runs), "rounds": runs})
    for on in modes:
        base = next((r["cells_per_hour"] for r in results
                     if r["parallel"] == 1 and r["mps"] == on), None)
        for result in results:
            if result["mps"] == on:
                result["speedup_vs_parallel_1"] = (result["cells_per_hour"] / base
                                                   if base else None)
    mps_speedup = {}
    if len(modes) == 2:
        for n in parallel:
            pairs = zip(per_key[(n, False)], per_key[(n, True)])
            mps_speedup[str(n)] = statistics.median(
                on["cells_per_hour"] / off["cells_per_hour"] for off, on in pairs)
    best = max(results, key=lambda r: r["cells_per_hour"])
    return {"smoke": smoke, "base_gin": setting["base_gin"], "bindings": setting["bindings"],
            "cell": CELL, "cells_per_slot": cells_per_slot, "gpus": detected,
            "results": results, "best_parallel": best["parallel"], "best_mps": best["mps"],
            "mps_speedup": mps_speedup}


def _machine() -> dict:
    import keras  # pylint: disable=g-import-not-at-top
    machine = {"cpus": len(placement.available_cores()), "python": platform.python_version(),
               "platform": platform.platform(), "keras": keras.__version__,
               "backend": keras.backend.backend()}
    for name in ("tensorflow", "jax"):
        if backends.installed(name):
            machine[name] = __import__(name).__version__
    if shutil.which("nvidia-smi"):
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                 check=False)
        machine["gpus"] = [line for line in listing.stdout.splitlines()
                           if line.startswith("GPU ")]
    return machine


FLAGS = flags.FLAGS
flags.DEFINE_bool("smoke", False, "Tiny cells on synthetic data with N = 1, 2 (CPU check).")
flags.DEFINE_list("parallel", None, "The N to measure (default 1,4,8; smoke: 1,2).")
flags.DEFINE_integer("cells_per_slot", 2, "Cells per slot: each N runs this × N cells.",
                     lower_bound=1)
flags.DEFINE_integer("rounds", 1, "Rounds (alternating the order of N); medians.",
                     lower_bound=1)
flags.DEFINE_integer("gpus", None, "As tools/sweep.py --gpus (default: detected).",
                     lower_bound=0)
flags.DEFINE_string("workdir", None, "Keep the sweep roots here (default: a temporary "
                    "directory, removed).")
flags.DEFINE_string("output", "runs/sweep_throughput.json", "The JSON written.")
flags.DEFINE_multi_string("gin_bindings", [], "Bindings appended to every cell's.")
flags.DEFINE_enum("mps", "off", sorted(MPS_MODES), "Sweeps under CUDA MPS: off, on, or "
                  "both (paired per round; reports mps_speedup per N).")


def main(argv):
    del argv
    parallel = [int(n) for n in FLAGS.parallel] if FLAGS.parallel else None
    results = {"machine": _machine(),
               **run(FLAGS.smoke, parallel, FLAGS.cells_per_slot, FLAGS.rounds, FLAGS.gpus,
                     FLAGS.workdir, FLAGS.gin_bindings, FLAGS.mps)}
    files.write_json(FLAGS.output, results, sort_keys=False)
    for result in results["results"]:
        sys.stdout.write(f"--parallel={result['parallel']}{' --mps' if result['mps'] else ''}: "
                         f"{result['cells_per_hour']:.1f} cells/hour ({result['done']}/"
                         f"{result['cells']} cells, {result['wall_seconds']:.0f} s)\n")
    for n, ratio in results["mps_speedup"].items():
        sys.stdout.write(f"--parallel={n}: MPS / no MPS = {ratio:.2f} (median of per-round "
                         "ratios)\n")
    sys.stdout.write(f"best: --parallel={results['best_parallel']}; wrote {FLAGS.output}\n")


if __name__ == "__main__":
    app.run(main)
