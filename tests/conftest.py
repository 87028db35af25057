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
"""

import importlib.util
import os

import pytest

_JAX_MARK = "pytest.mark.jax"
_HERE = os.path.dirname(os.path.abspath(__file__))
_JAX_DIR = os.path.join(_HERE, "jax")
_HAS_TF = importlib.util.find_spec("tensorflow") is not None


def pytest_configure(config):
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
