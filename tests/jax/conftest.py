"""The JAX suite: collected only when Keras runs on JAX.

Run it in the TF-free venv: `KERAS_BACKEND=jax .venv-jax/bin/python -m pytest
tests/jax` (`make test-jax`). Under the TensorFlow suite these modules are not
even imported (they import `jax`, which the TF venv does not have).
"""

import keras

if keras.backend.backend() != "jax":
    collect_ignore_glob = ["test_*.py"]
