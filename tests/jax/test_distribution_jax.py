"""run.distribution on JAX: DataParallel over two host devices, jax.distributed over two
processes (TensorFlow blocked), and the per-process batch slices.

The JAX suite runs with two XLA host devices. A data-parallel JAX step is one
global program, so it trains exactly the single-device problem: same mask,
same epoch losses (float round-off apart).
"""

import json
import subprocess

import numpy as np
import pytest
from keras.utils import PyDataset

from epsd_tf.train import distribution_jax
from tests.jax import tf_free
from tests.train import distributed_runs as runs


class _Numbered(PyDataset):
    def __init__(self):
        super().__init__()
        self.epochs_ended = 0

    def __len__(self):
        return 3

    def __getitem__(self, index):
        rows = np.arange(8) + 10 * index
        return {"image": rows[:, None].astype("float32"), "example_id": rows}, rows

    def on_epoch_end(self):
        self.epochs_ended += 1


def test_process_slices_partition_every_global_batch():
    batches = _Numbered()
    parts = [distribution_jax.ProcessSlices(batches, p, 4) for p in range(4)]
    for index in range(len(batches)):
        features, labels = batches[index]
        pieces = [part[index] for part in parts]
        np.testing.assert_array_equal(np.concatenate([p[1] for p in pieces]), labels)
        np.testing.assert_array_equal(
            np.concatenate([p[0]["example_id"] for p in pieces]), features["example_id"])
        assert all(p[0]["image"].shape == (2, 1) for p in pieces)
    assert len(parts[0]) == len(batches)
    parts[0].on_epoch_end()
    assert batches.epochs_ended == 1


def _run(workdir, *args, **popen):
    return tf_free.tool("run.py", *runs.smoke_args(workdir), *args, **popen)


@pytest.fixture(scope="module")
def single_device(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("single") / "run"
    result = _run(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir



@pytest.mark.slow
def test_data_parallel_on_two_devices_trains_like_one(tmp_path, single_device):
    workdir = tmp_path / "run"
    result = _run(workdir, "--distribution=data_parallel")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DataParallel over 2 devices" in result.stderr
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["distribution"] == {"name": "data_parallel", "replicas": 2, "workers": 1}
    runs.assert_same_training(workdir, single_device)


@pytest.mark.slow
def test_multi_worker_with_jax_distributed_only_process_0_writes(tmp_path, single_device,
                                                                 monkeypatch):
    """Two processes of one CPU device each, configured by Keras' environment variables."""
    workdir, scratch = tmp_path / "run", tmp_path / "tmp"
    scratch.mkdir()
    port = runs.free_ports(1)[0]
    monkeypatch.setenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", f"127.0.0.1:{port}")
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.delenv("TF_CONFIG", raising=False)
    processes = []
    for index in range(2):
        monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", str(index))
        processes.append(_run(workdir, "--distribution=multi_worker", stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True))
    try:
        (chief_out, chief_err), (worker_out, worker_err) = [
            p.communicate(timeout=600) for p in processes]
    finally:
        for p in processes:
            p.kill()
    assert processes[0].returncode == 0, chief_err[-3000:]
    assert processes[1].returncode == 0, worker_err[-3000:]
    assert "worker 1 finished; the chief writes" in worker_out
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["distribution"] == {"name": "multi_worker", "replicas": 2, "workers": 2}
    assert [p.name for p in workdir.iterdir() if p.name.startswith(".")] == []
    assert list(scratch.iterdir()) == []
    runs.assert_same_training(workdir, single_device)


def test_multi_worker_needs_every_keras_variable(monkeypatch):
    monkeypatch.setenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", "127.0.0.1:1234")
    monkeypatch.delenv("KERAS_DISTRIBUTION_NUM_PROCESSES", raising=False)
    with pytest.raises(ValueError, match="KERAS_DISTRIBUTION_NUM_PROCESSES"):
        distribution_jax.plan("multi_worker")
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "2")
    with pytest.raises(ValueError, match="0 <= process id < processes"):
        distribution_jax.plan("multi_worker")
