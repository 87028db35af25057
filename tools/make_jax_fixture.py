"""Trains the JAX-trained fixture that tests/export/test_jax_trained.py exports on TF.

  KERAS_BACKEND=jax python tools/make_jax_fixture.py   (with the package installed)

Runs gin/smoke.gin (EPSD scoring with DLB's loss at 90 % sparsity, then DLB
training; synthetic data) for one epoch on Keras' JAX backend in a temporary
workdir, copies its trained `model.keras` to `tests/fixtures/jax_smoke_model.keras`
and writes the model's logits on the first `EXAMPLES` test images to
`tests/fixtures/jax_smoke_logits.npz`, so the TensorFlow side can check that
it loads the same function before exporting it. Needs no TensorFlow.
"""

import os
import shutil
import sys
import tempfile

from absl import app

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FIXTURES = os.path.join(_REPO, "tests", "fixtures")
MODEL = os.path.join(FIXTURES, "jax_smoke_model.keras")
LOGITS = os.path.join(FIXTURES, "jax_smoke_logits.npz")
GIN_FILES = ["gin/smoke.gin"]
# A small network: the committed .keras stays a few tens of KB.
GIN_BINDINGS = ["run.epochs = 1", "build.filters = (4, 8)", "build.dense_units = 8"]
EXAMPLES = 64


def main(argv):
    del argv
    import gin
    import keras
    import numpy as np

    from epsd_tf import data
    from epsd_tf.train import config as config_lib

    if keras.backend.backend() != "jax":
        raise app.UsageError(f"run with KERAS_BACKEND=jax (Keras runs on "
                             f"{keras.backend.backend()!r})")
    with tempfile.TemporaryDirectory() as workdir:
        config_text = config_lib.parse(GIN_FILES, GIN_BINDINGS)
        config_lib.run_from_config(workdir, config_text)
        os.makedirs(FIXTURES, exist_ok=True)
        shutil.copyfile(os.path.join(workdir, "model.keras"), MODEL)
    model = keras.models.load_model(MODEL)
    images, labels = data.batch_info.first_examples(gin.get_configurable("load")().test,
                                                    EXAMPLES)
    logits = keras.ops.convert_to_numpy(model(images, training=False))
    np.savez(LOGITS, logits=logits, labels=labels, backend="jax",
             keras=keras.__version__, gin_files=GIN_FILES, gin_bindings=GIN_BINDINGS)
    sys.stdout.write(f"wrote {MODEL} ({os.path.getsize(MODEL)} bytes) and {LOGITS}\n")


if __name__ == "__main__":
    app.run(main)
