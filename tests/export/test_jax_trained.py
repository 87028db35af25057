"""Train on JAX, export on TensorFlow (issue 11).

`tests/fixtures/jax_smoke_model.keras` was trained by `tools/make_jax_fixture.py`
on Keras' JAX backend (gin/smoke.gin: EPSD at 90 % sparsity + DLB). Here, on
TensorFlow, it loads as the same function (the logits the JAX side recorded)
and `export_all` writes artifacts that pass the usual parity checks, with the
pruned weights still exactly zero.
"""

import os

import gin
import keras
import numpy as np
import pytest

from epsd_tf import data, export
from epsd_tf.pruning import get_prunable_weights
from epsd_tf.train import config as config_lib

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "fixtures")
MODEL = os.path.join(FIXTURES, "jax_smoke_model.keras")
LOGITS = os.path.join(FIXTURES, "jax_smoke_logits.npz")


@pytest.fixture(scope="module")
def recorded():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("exports on TensorFlow")
    reference = np.load(LOGITS)
    config_lib.parse([str(f) for f in reference["gin_files"]],
                     [str(b) for b in reference["gin_bindings"]])
    splits = gin.get_configurable("load")()
    images, labels = data.batch_info.first_examples(splits.test, len(reference["labels"]))
    np.testing.assert_array_equal(labels, reference["labels"])  # the same test images
    return keras.models.load_model(MODEL), splits, images, labels, reference


def test_the_jax_trained_model_loads_as_the_same_function(recorded):
    model, _, images, _, reference = recorded
    assert str(reference["backend"]) == "jax"
    logits = keras.ops.convert_to_numpy(model(images, training=False))
    np.testing.assert_allclose(logits, reference["logits"], rtol=1e-4, atol=1e-4)
    weights = get_prunable_weights(model)
    zeros = sum(int((keras.ops.convert_to_numpy(w) == 0).sum()) for w in weights.values())
    assert zeros / sum(int(np.prod(w.shape)) for w in weights.values()) >= 0.89


def test_the_jax_trained_model_exports_with_parity(recorded, tmp_path):
    # Float formats: int8 parity (top-1 >= 97 %) is meaningless for this tiny
    # one-epoch network, whose logits are near ties.
    model, splits, images, labels, _ = recorded
    report = export.export_all(
        model, str(tmp_path), formats=("keras", "saved_model", "float32", "float32_sparse", "float16"),
        representative_data=splits.train, eval_batch=(images, labels), latency_runs=0)
    for name, artifact in report["artifacts"].items():
        assert artifact["parity"]["passed"], (name, artifact["parity"])
    assert report["sparsity"]["sparsity"] >= 0.89
