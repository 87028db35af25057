"""Test selection for the two suites (README, "Tests").

* The TensorFlow suite (`make test`, `.venv`): every test but those marked
  `backend_free` (no backend code runs in them: `make test` runs them once, in
  the JAX suite); `tests/jax/` skips itself unless Keras runs on JAX.
* The JAX suite (`make test-jax`: a TF-free `.venv-jax`, `KERAS_BACKEND=jax`,
  `pytest -m jax`): `tests/jax/` and the backend-neutral tests elsewhere,
  marked `jax` (`pytestmark = pytest.mark.jax` in a module, or per test).

Where TensorFlow cannot be imported, only modules that can hold JAX-suite
tests are collected (`tests/jax/`, and modules whose text carries the `jax`
mark), so the TF-only modules, which import TensorFlow at the top, are not
even imported.

A session compiles the same JAX programs again and again: every subprocess
run of gin/smoke.gin (resume, multi-worker, sweeps, the benchmark drivers)
lowers the same training, evaluation and scoring steps. The session therefore
shares one JAX persistent compilation cache, a temporary directory removed at
its end (`JAX_COMPILATION_CACHE_DIR`, inherited by every subprocess; a smoke
run on 2 cores: 21 s cold, 8 s from the cache). A cache hit loads the
executable a fresh compile would build (tests/jax/test_sweep_cache.py checks
that a cell trains to the same bits with the cache off). A value of
`JAX_COMPILATION_CACHE_DIR` set by the caller, "" included (no cache), is kept;
tests of the sweep's own cache clear it.
"""

import importlib.util
import os
import shutil
import tempfile

import pytest

_JAX_MARK = "pytest.mark.jax"
_HERE = os.path.dirname(os.path.abspath(__file__))
_JAX_DIR = os.path.join(_HERE, "jax")
_HAS_TF = importlib.util.find_spec("tensorflow") is not None
_SESSION_JAX_CACHE = None  # the directory this session made, removed at its end


def _share_a_jax_compilation_cache():
    """Before any test module imports JAX: one persistent cache for the session."""
    global _SESSION_JAX_CACHE
    if "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return
    _SESSION_JAX_CACHE = tempfile.mkdtemp(prefix="epsd-tests-jax-cache-")
    # The variables of a sweep's cache (epsd_tf/sweep/placement.compilation_cache:
    # programs that compile in under a second cached too), written out here because
    # importing the package would import Keras, and so JAX, before they are set.
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _SESSION_JAX_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


def pytest_unconfigure(config):
    if _SESSION_JAX_CACHE is not None:
        shutil.rmtree(_SESSION_JAX_CACHE, ignore_errors=True)


def pytest_configure(config):
    _share_a_jax_compilation_cache()
    config.addinivalue_line(
        "markers", "jax: also runs in the TF-free JAX suite (make test-jax; tests/conftest.py)")
    config.addinivalue_line(
        "markers", "backend_free: runs no Keras backend code (sweep orchestration, study "
        "bookkeeping): once per `make test`, in the JAX suite; its TF suite deselects it")


def _in_jax_suite(path: str) -> bool:
    if os.path.commonpath([path, _JAX_DIR]) == _JAX_DIR:
        return True
    if os.path.isdir(path):
        return any(_in_jax_suite(os.path.join(root, name))
                   for root, _, names in os.walk(path) for name in names
                   if name.startswith("test_") and name.endswith(".py"))
    if not (os.path.basename(path).startswith("test_") and path.endswith(".py")):
        return True  # helpers and conftest files are imported by the tests that need them
    with open(path, encoding="utf-8") as f:
        return _JAX_MARK in f.read()


def pytest_ignore_collect(collection_path, config):
    if _HAS_TF:
        return None
    path = str(collection_path)
    if os.path.commonpath([path, _HERE]) != _HERE or path == _HERE:
        return None
    return None if _in_jax_suite(path) else True


def pytest_collection_modifyitems(config, items):
    for item in items:
        if os.path.commonpath([str(item.path), _JAX_DIR]) == _JAX_DIR:
            item.add_marker(pytest.mark.jax)
