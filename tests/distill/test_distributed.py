"""SD training under tf.distribute.MirroredStrategy (two logical CPUs, own process)."""

import json
import os
import subprocess
import sys

import pytest

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mirrored_worker.py")


@pytest.mark.slow
def test_mirrored_strategy_trains_every_method_with_consistent_state():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run([sys.executable, WORKER], capture_output=True, text=True,
                               env=env, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    line = next(l for l in completed.stdout.splitlines() if l.startswith("RESULTS "))
    results = json.loads(line[len("RESULTS "):])
    assert results["replicas"] == 2
    for kind in ("none", "dlb", "cskd", "pskd"):
        assert all(v == v and abs(v) < 1e6 for v in results[kind]["loss"]), kind
    for kind in ("dlb", "cskd", "pskd"):
        assert results[kind]["sd_loss"][-1] > 0, kind
    assert results["dlb"]["dlb_replica_shards_match"]
    assert results["pskd"]["pskd_copies_equal"]
    assert results["pskd"]["pskd_rows_sum_to_one"]
    assert results["pskd"]["epoch"] == 1
    assert "does not divide over 2 replicas" in results["odd_batch_error"]
    assert "does not divide over 2 replicas" in results["odd_dataset_error"]
