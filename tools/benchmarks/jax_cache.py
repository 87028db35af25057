"""The JAX compilation cache of sweep cells (issue 13): the time it saves, results unchanged.

Every cell of a sweep shares `<root>/.jax_cache` (`epsd_tf/sweep/placement.py`,
`compilation_cache`). This runs one cell, a `tools/run.py` process with the
same flags and seed each time in a fresh workdir, with the environment a
sweep gives it:

* `off`: no cache (`JAX_COMPILATION_CACHE_DIR=` empty), the reference;
* then `--pairs` pairs, their order alternating: `cold` (a fresh, empty cache:
  it compiles and writes every program) and `warm` (a cache filled by the
  same cell with another seed: it loads what it can, as every cell of a
  sweep after the first does).

The measured cells use seed 0 (`run.seed`, `load.seed`), the filling one
seed 1, as in a sweep: a program that embedded seed-dependent constants would
miss the warm cache (EPSD's scorer did, with the initial weights as constants,
until `ModelState.compile` made them arguments).

Figures: per pair warm/cold of the process wall time and of the run's own
`seconds.total` (`metrics.json`), the median over pairs (tools/bench.py's
rule: side by side, paired, order alternating); the cache's entries and
bytes after a cold run; and whether each run's trained weights
(`model.keras`), `train_log.csv` (timing columns aside) and metrics (timings
aside) equal the `off` run's bit for bit.

  KERAS_BACKEND=jax PYTHONPATH=. python tools/benchmarks/jax_cache.py \\
      --output=runs/jax_cache.json                      # gin/smoke.gin on CPU, ~2 min
  # On a GPU, a study cell cut to one epoch:
  KERAS_BACKEND=jax PYTHONPATH=. python tools/benchmarks/jax_cache.py \\
      --base_gin=gin/study_resnet20.gin --gin_bindings="run.epochs = 1" --pairs=2
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile

from absl import app, flags, logging

from epsd_tf import files
from epsd_tf.sweep import grid, placement

TIMING_COLUMNS = ("epoch_seconds", "images_per_second")
TIMING_METRICS = ("seconds", "cost")

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command's flags (defined only when run, so that other benchmarks' flags of
    the same names can be imported alongside this module, e.g. in the tests)."""
    flags.DEFINE_multi_string("base_gin", ["gin/smoke.gin"], "The cell's gin file(s).")
    flags.DEFINE_multi_string("gin_bindings", [], "The cell's extra gin bindings.")
    flags.DEFINE_integer("pairs", 3, "Pairs of cold and warm runs (order alternating).",
                         lower_bound=1)
    flags.DEFINE_string("workdir", None, "Keep the runs here (default: a temporary directory).")
    flags.DEFINE_string("output", "runs/jax_cache.json", "Where to write the JSON results.")


def run_cell(workdir: str, root: str | None, base_gin, bindings, seed: int = 0) -> dict:
    """One `tools/run.py` process with the compilation cache of the sweep root `root`
    (None: the cache off)."""
    bindings = [*bindings, f"run.seed = {seed}", f"load.seed = {seed}"]
    command = [sys.executable, grid.RUN_TOOL, *[f"--gin_file={g}" for g in base_gin],
               *[f"--gin_bindings={b}" for b in bindings], f"--workdir={workdir}"]
    env = dict(os.environ, KERAS_BACKEND="jax")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env.pop("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", None)
    env = (placement.Placement({}, None, placement.compilation_cache(root)).apply(env)
           if root else dict(env, JAX_COMPILATION_CACHE_DIR=""))
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    metrics = files.read_json(os.path.join(workdir, files.METRICS))
    return {"wall_seconds": wall, "run_seconds": metrics["seconds"]["total"]}


def cache_size(cache: str) -> dict:
    names = os.listdir(cache) if os.path.isdir(cache) else []
    return {"entries": len(names),
            "bytes": sum(os.path.getsize(os.path.join(cache, n)) for n in names)}


def fingerprint(workdir: str) -> dict:
    """What training produced: every weight's bytes, the log and metrics sans timings."""
    import h5py  # pylint: disable=g-import-not-at-top
    with zipfile.ZipFile(os.path.join(workdir, files.MODEL)) as archive:
        data = archive.read("model.weights.h5")
    weights = {}
    with h5py.File(io.BytesIO(data), "r") as h5:
        h5.visititems(lambda name, item: weights.__setitem__(name, item[()].tobytes())
                      if isinstance(item, h5py.Dataset) else None)
    with open(os.path.join(workdir, files.TRAIN_LOG)) as f:
        log = [{k: v for k, v in row.items() if k not in TIMING_COLUMNS}
               for row in csv.DictReader(f)]
    metrics = files.read_json(os.path.join(workdir, files.METRICS))
    return {"weights": weights, "log": log,
            "metrics": {k: v for k, v in metrics.items() if k not in TIMING_METRICS}}


def run(base_gin, bindings, pairs: int, scratch: str) -> dict:
    """The `off` run, then `pairs` cold/warm pairs; returns the JSON-ready results."""
    reference_dir = os.path.join(scratch, "off")
    off = run_cell(reference_dir, None, base_gin, bindings)
    reference = fingerprint(reference_dir)
    rows, identical, size = [], {}, None
    for index in range(pairs):
        roots = {kind: os.path.join(scratch, f"pair{index}-{kind}") for kind in ("cold", "warm")}
        # The warm run's cache: filled by another seed's cell (untimed), as in a sweep.
        run_cell(os.path.join(roots["warm"], "fill"), roots["warm"], base_gin, bindings,
                 seed=1)
        row = {}
        for kind in ("cold", "warm") if index % 2 == 0 else ("warm", "cold"):
            workdir = os.path.join(roots[kind], "cell")
            row[kind] = run_cell(workdir, roots[kind], base_gin, bindings)
            identical[f"pair{index}-{kind}"] = fingerprint(workdir) == reference
        size = cache_size(os.path.join(roots["cold"], placement.JAX_CACHE))
        row["wall_ratio"] = row["warm"]["wall_seconds"] / row["cold"]["wall_seconds"]
        row["run_ratio"] = row["warm"]["run_seconds"] / row["cold"]["run_seconds"]
        logging.info("pair %d: cold %.1f s, warm %.1f s (wall); warm/cold %.3f", index,
                     row["cold"]["wall_seconds"], row["warm"]["wall_seconds"],
                     row["wall_ratio"])
        rows.append(row)
    return {"base_gin": list(base_gin), "bindings": list(bindings), "off": off, "pairs": rows,
            "median_wall_ratio": statistics.median(r["wall_ratio"] for r in rows),
            "median_run_ratio": statistics.median(r["run_ratio"] for r in rows),
            "median_wall_saved_seconds": statistics.median(
                r["cold"]["wall_seconds"] - r["warm"]["wall_seconds"] for r in rows),
            "cache_after_one_cold_run": size,
            "min_compile_time_secs": placement.JAX_CACHE_MIN_COMPILE_SECONDS,
            "bit_identical_to_off": identical, "all_bit_identical": all(identical.values())}


def main(argv):
    del argv
    import jax  # pylint: disable=g-import-not-at-top
    scratch = FLAGS.workdir or tempfile.mkdtemp(prefix="jax_cache.")
    try:
        results = run(FLAGS.base_gin, FLAGS.gin_bindings, FLAGS.pairs, scratch)
    finally:
        if FLAGS.workdir is None:
            shutil.rmtree(scratch, ignore_errors=True)
    results.update(jax=jax.__version__, devices=[str(d) for d in jax.devices()],
                   cpus=len(placement.available_cores()))
    files.write_json(FLAGS.output, results)
    print(json.dumps({k: v for k, v in results.items() if k not in ("pairs", "off")},
                     indent=1))


if __name__ == "__main__":
    define_flags()
    app.run(main)
