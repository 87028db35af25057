"""On JAX without TensorFlow, a run killed mid-epoch and resumed ends with exactly
the weights of an uninterrupted run: the numpy batches are keyed by the
`EpochClock` and the re-run trains on the rest of the interrupted epoch
(`skip`), as tests/train/test_determinism.py checks on TensorFlow."""

import os

import numpy as np
import pytest

from tests.jax import tf_free

pytest.importorskip("jax")

WORKER = os.path.join(tf_free.REPO, "tests", "train", "determinism_worker.py")


def _worker(workdir, *kill):
    code = (f"import runpy\nsys.argv = {[WORKER, str(workdir), *map(str, kill)]!r}\n"
            f"runpy.run_path({WORKER!r}, run_name='__main__')\n")
    return tf_free.python(code, timeout=600)


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_to_the_same_weights_on_jax(tmp_path):
    import keras

    import epsd_tf  # noqa: F401  (registers the mask wrapper for load_model)

    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    result = _worker(whole)
    assert result.returncode == 0, result.stderr[-3000:]
    killed = _worker(resumed, 1, 4)
    assert killed.returncode != 0 and "killed after epoch 1 batch 4" in killed.stderr
    assert '"batches_done": 4' in (resumed / "backup" / "position.json").read_text()
    result = _worker(resumed)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = keras.models.load_model(whole / "model.keras").get_weights()
    actual = keras.models.load_model(resumed / "model.keras").get_weights()
    for a, b in zip(actual, expected):
        np.testing.assert_array_equal(a, b)
    log = (resumed / "train_log.csv").read_text().strip().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["0", "1", "2"]
