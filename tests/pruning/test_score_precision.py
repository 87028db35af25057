"""`score_dtype="float64"` computes in float64 throughout, on both backends.

On JAX, Keras 3 promotes float64 to float32 in `ops.mean`, `ops.var` and
BatchNormalization even with x64 on; `autodiff.precision("float64")` keeps
float64 while scoring. Before it did, "float64" scores carried float32
round-off: they changed with the order of the examples in a batch (5e-7) and
with the XLA CPU thread count (EPSD's ResNet-20 mask by 16 380 entries).
"""

import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

from epsd_tf.pruning import autodiff, scorers
from tests.pruning.helpers import batches, tiny_cnn

pytestmark = pytest.mark.jax

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "core_count_worker.py")


def worst_relative_difference(a: dict, b: dict) -> float:
    """max over layers of max |a - b| / max |b|."""
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max() / np.abs(b[k]).max()) for k in a)


def permuted(batch_list: list, seed: int = 0) -> list:
    """Each batch's examples (every feature and the labels) in another order."""
    rng = np.random.default_rng(seed)
    out = []
    for x, y in batch_list:
        order = rng.permutation(len(y))
        x = {k: v[order] for k, v in x.items()} if isinstance(x, dict) else x[order]
        out.append((x, y[order]))
    return out


def test_keras_promotes_float64_to_float64_inside_precision_only():
    before = keras.backend.result_type("float64", "float32")
    with autodiff.precision("float64"):
        assert keras.backend.result_type("float64", "float32") == "float64"
        x = keras.ops.convert_to_tensor(np.arange(4.0), "float64")
        assert keras.backend.standardize_dtype(keras.ops.mean(x).dtype) == "float64"
    assert keras.backend.result_type("float64", "float32") == before
    with autodiff.precision("float32"):
        assert keras.backend.result_type("float64", "float32") == before


@pytest.mark.parametrize("scorer, kind, settings", [
    ("snip", "plain", {}),
    ("epsd", "two_views", {"method": "dlb", "inner_steps": 1}),
])
def test_float64_scores_do_not_depend_on_the_order_of_examples(scorer, kind, settings):
    # Batch statistics, batch means and the DLB pairing are order-free, so only
    # round-off can move the scores: ~1e-15 in float64 (float32 moves them by
    # ~5e-7, as did JAX's "float64" scoring through Keras' float32 BatchNorm).
    model = tiny_cnn()
    data = batches(kind, count=2)
    ordered = scorers.score(model, data, scorer, score_dtype="float64", **settings)
    shuffled = scorers.score(model, permuted(data), scorer, score_dtype="float64", **settings)
    assert worst_relative_difference(shuffled, ordered) < 1e-12


def _cores_available() -> list:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset (util-linux)")
@pytest.mark.skipif(len(_cores_available()) < 2, reason="needs 2 CPU cores")
def test_float64_scores_do_not_depend_on_the_cpu_core_count(tmp_path):
    # The same scoring pinned to one core and to two: XLA (and Eigen) split
    # reductions by thread count, so the scores may differ by float64
    # round-off only (3e-15 here; 1.5e-6 before the fix).
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    cores = _cores_available()
    scores = []
    for pinned in ([cores[0]], cores[:2]):
        out = tmp_path / f"scores_{len(pinned)}.npz"
        result = subprocess.run(
            ["taskset", "-c", ",".join(map(str, pinned)), sys.executable, WORKER,
             str(out), "snip", "float64"],
            capture_output=True, text=True, env=env, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        scores.append(dict(np.load(out)))
    assert worst_relative_difference(scores[0], scores[1]) < 1e-10
