"""Scores a fixed small Conv-BN network and saves the scores (run in a subprocess).

`python core_count_worker.py OUT.npz SCORER DTYPE`: six Conv16-BN-ReLU blocks
on 28×28 inputs, one batch of 32, scored by SCORER in DTYPE. The caller pins
the process to a number of CPU cores (taskset) and compares the saved scores
(tests/pruning/test_score_precision.py).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from epsd_tf import pruning  # noqa: E402
from epsd_tf.pruning import scorers  # noqa: E402

DEPTH, WIDTH, SIZE, BATCH, CLASSES = 6, 16, 28, 32, 10


def network() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 1))
    h = inputs
    for i in range(DEPTH):
        h = keras.layers.Conv2D(WIDTH, 3, padding="same", use_bias=False, name=f"conv{i}")(h)
        h = keras.layers.BatchNormalization()(h)
        h = keras.layers.ReLU()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, name="fc")(h))


def main(out: str, scorer: str, dtype: str) -> None:
    rng = np.random.default_rng(0)
    batch = (rng.normal(size=(BATCH, SIZE, SIZE, 1)).astype("float32"),
             rng.integers(0, CLASSES, BATCH).astype("int32"))
    settings = {"inner_steps": 1} if scorer in ("prospr", "epsd") else {}
    batches = [batch] * scorers.batches_needed(scorer, settings)
    scores = pruning.score(network(), batches, scorer, score_dtype=dtype, **settings)
    np.savez(out, **{name.replace("/", "__"): value for name, value in scores.items()})


if __name__ == "__main__":
    main(*sys.argv[1:])
