"""Issue 12, defect 6: a run killed mid-epoch and resumed ends with exactly the
weights of an uninterrupted run (op determinism on; each run its own process)."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import epsd_tf  # noqa: F401  (registers the mask wrapper for load_model)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "determinism_worker.py")


def _worker(workdir, *kill):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    return subprocess.run([sys.executable, WORKER, str(workdir), *map(str, kill)],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_to_the_same_weights(tmp_path):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    result = _worker(whole)
    assert result.returncode == 0, result.stderr[-3000:]
    # Killed after batch 4 of epoch 1: the last backup holds 4 batches of it,
    # so the re-run must redo batch 4 and skip batches 0-3 (not replay them).
    killed = _worker(resumed, 1, 4)
    assert killed.returncode != 0 and "killed after epoch 1 batch 4" in killed.stderr
    assert not (resumed / "model.keras").exists()
    assert '"batches_done": 4' in (resumed / "backup" / "position.json").read_text()
    result = _worker(resumed)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (resumed / "backup").exists()

    expected = keras.models.load_model(whole / "model.keras").get_weights()
    actual = keras.models.load_model(resumed / "model.keras").get_weights()
    assert len(actual) == len(expected)
    for a, b in zip(actual, expected):
        np.testing.assert_array_equal(a, b)
    log = (resumed / "train_log.csv").read_text().strip().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["0", "1", "2"]  # each epoch once
