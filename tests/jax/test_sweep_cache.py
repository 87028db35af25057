"""The cells of a sweep share one JAX persistent compilation cache (`<root>/.jax_cache`,
epsd_tf/sweep/placement.py), and it changes nothing they compute.

Real `tools/run.py` cells on gin/smoke.gin, cut small, on the JAX backend
without TensorFlow (this suite's venv). The time saved is measured by
tools/benchmarks/jax_cache.py, not asserted here.
"""

import os
import sys

import pytest

from epsd_tf import sweep
from epsd_tf.sweep import placement

pytest.importorskip("jax")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools", "benchmarks"))
import jax_cache  # noqa: E402  (tools/benchmarks/jax_cache.py: the run's fingerprint)

BINDINGS = ["run.epochs = 1", "run.verbose = 0", "load.num_examples = 128",
            "load.num_test = 64"]


@pytest.mark.slow
def test_a_sweeps_cells_reuse_its_compilation_cache_and_train_bit_identically(tmp_path,
                                                                              monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    monkeypatch.setenv("PYTHONPATH", REPO)  # the cells' tools/run.py imports epsd_tf
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.delenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", raising=False)
    cells = sweep.make_grid(["epsd"], ["dlb"], ["0.9"], ["0", "1"])
    root = tmp_path / "s"
    cache = root / placement.JAX_CACHE
    outcome = sweep.run_sweep(cells[:1], str(root), ["gin/smoke.gin"], BINDINGS)
    assert outcome["done"] == [cells[0].name]
    written = sorted(os.listdir(cache))
    assert written  # the first cell wrote its compiled programs
    outcome = sweep.run_sweep(cells, str(root), ["gin/smoke.gin"], BINDINGS)
    assert outcome["done"] == [cells[1].name]
    # Another seed compiles the same programs: the second cell loads its training and
    # evaluation steps, EPSD's scoring program (the weights are its arguments, not
    # constants: ModelState.compile) and every op from the cache; it writes nothing new.
    assert any(name.startswith("jit_train_step-") for name in written)
    assert any(name.startswith("jit_compute-") for name in written)  # EPSD's scorer
    new = set(os.listdir(cache)) - set(written)
    assert not new, new

    # The same cell with the cache off trains to the same bits.
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "")
    off = tmp_path / "off"
    assert sweep.run_sweep(cells[1:], str(off), ["gin/smoke.gin"], BINDINGS)["done"]
    assert not (off / placement.JAX_CACHE).exists()
    cached = jax_cache.fingerprint(str(root / "cells" / cells[1].name))
    assert cached["weights"] and cached["log"]
    assert cached == jax_cache.fingerprint(str(off / "cells" / cells[1].name))
