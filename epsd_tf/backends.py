"""Which Keras backend runs, whether TensorFlow is there, and what needs it.

Imports neither Keras nor TensorFlow: `epsd_tf/__init__.py` calls
`check_installed()` before Keras is imported, so asking for a backend that is
not installed (`KERAS_BACKEND=jax` without jax) fails with what to do, not
with an import error from inside Keras. The parts of the library that only
TensorFlow provides (TFDS and ImageNet input, SavedModel/TFLite export, TF-MOT
PQAT) call `require_tensorflow` before any work (DESIGN.md, "Backends").
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os

# Keras backend name -> the module it needs.
BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch",
                   "numpy": "numpy", "openvino": "openvino"}
_REQUIREMENTS = {"tensorflow": "pip install -r requirements.txt",
                 "jax": "pip install -r requirements-jax.txt (or the 'jax' extra)"}
EXPORT_COMMAND = ("epsd-export --model=<workdir>/model.keras --out=<workdir>/export "
                  "(or python tools/export.py with the same flags)")


def requested_backend() -> str:
    """The backend Keras will use: `KERAS_BACKEND`, else `keras.json`, else TensorFlow.

    Reads the same settings as Keras (without importing it); once Keras is
    imported, `keras.backend.backend()` is the authority (see `backend()`).
    """
    name = os.environ.get("KERAS_BACKEND")
    if name:
        return name
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json"), encoding="utf-8") as f:
            return json.load(f).get("backend", "tensorflow")
    except (OSError, ValueError):
        return "tensorflow"


def backend() -> str:
    """The backend in use: Keras' answer once Keras is imported."""
    import keras  # Imported by every caller of this function anyway.

    return keras.backend.backend()


def installed(module: str) -> bool:
    """Whether `module` can be imported (looked up, not imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@functools.cache
def has_tensorflow() -> bool:
    """Whether TensorFlow can be imported (looked up, not imported)."""
    return installed("tensorflow")


def check_installed() -> None:
    """Raises ModuleNotFoundError if the requested backend's package is missing.

    Raises:
        ModuleNotFoundError: naming the backend, the missing package and the
            requirements to install (or how to pick another backend).
    """
    name = requested_backend()
    module = BACKEND_MODULES.get(name)
    if module is None:
        raise ValueError(f"KERAS_BACKEND={name!r} is not a Keras backend; valid: "
                         f"{sorted(BACKEND_MODULES)}")
    if not installed(module):
        how = _REQUIREMENTS.get(name, f"pip install {module}")
        others = [b for b in ("tensorflow", "jax", "torch")
                  if b != name and installed(BACKEND_MODULES[b])]
        raise ModuleNotFoundError(
            f"Keras backend {name!r} is requested (KERAS_BACKEND or ~/.keras/keras.json) "
            f"but {module!r} is not installed: {how}, or set KERAS_BACKEND to an "
            f"installed backend ({', '.join(others) or 'none found'}).", name=module)


def require_tensorflow(what: str, instead: str) -> None:
    """Raises ValueError unless Keras runs on TensorFlow (and it is installed).

    Args:
        what: the feature asked for, e.g. "run.export = @export_all".
        instead: what to do on this backend.
    """
    name = backend()
    if name == "tensorflow" and has_tensorflow():
        return
    why = (f"this run uses Keras' {name!r} backend" if name != "tensorflow"
           else "TensorFlow is not installed")
    if not has_tensorflow() and name != "tensorflow":
        why += " and TensorFlow is not installed"
    raise ValueError(f"{what} needs TensorFlow (Keras' TensorFlow backend), but {why}. "
                     f"{instead}")
