"""tools/run.py with run.distribution on TensorFlow: data_parallel and multi_worker.

Two logical CPU devices stand in for two GPUs, and two worker processes on
127.0.0.1 for two hosts. The config's batch size is the global batch and
BatchNormalization uses the global batch's statistics, so the distributed run
trains the single-device run's problem: same mask, same epoch losses (float
round-off apart).
"""

import json
import os
import subprocess
import sys
import time
import zipfile

import pytest

from tests.train import distributed_runs as runs


@pytest.fixture(scope="module")
def single_device(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("single") / "run"
    result = subprocess.run([sys.executable, runs.RUN, *runs.smoke_args(workdir)],
                            cwd=runs.REPO, env=runs.env(), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir



@pytest.mark.slow
def test_data_parallel_on_two_devices_trains_like_one(tmp_path, single_device):
    workdir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, runs.TWO_CPU_RUN, *runs.smoke_args(workdir),
         "--distribution=data_parallel"], cwd=runs.REPO, env=runs.env(),
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["distribution"] == {"name": "data_parallel", "replicas": 2, "workers": 1}
    assert "MirroredStrategy, 2 replicas" in result.stderr
    runs.assert_same_training(workdir, single_device)
    # The saved network is the plain one (no TF-only synchronized BatchNorm).
    with zipfile.ZipFile(workdir / "model.keras") as saved:
        config = saved.read("config.json").decode()
    assert '"synchronized": false' in config and '"synchronized": true' not in config


@pytest.mark.slow
def test_multi_worker_killed_resumes_from_the_chiefs_backup_and_only_the_chief_writes(
        tmp_path, single_device):
    """Two worker processes, killed after a few epochs, then started again.

    One test for both (each multi-worker start costs two processes' imports): the
    second start resumes from the chief's backup, only the chief writes the workdir,
    and the training is the single-device run's (same mask, same first epochs).
    """
    workdir, killed_scratch, scratch = tmp_path / "run", tmp_path / "tmp0", tmp_path / "tmp"
    killed_scratch.mkdir()  # a killed worker cannot delete its scratch directory: keep it here
    scratch.mkdir()
    log = workdir / "train_log.csv"
    epochs = "--gin_bindings=run.epochs = 10"
    processes = runs.start_workers(runs.python() + [runs.RUN], workdir, epochs,
                                   extra_env={"TMPDIR": str(killed_scratch)},
                                   output=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and processes[0].poll() is None:
        if log.exists() and len(log.read_text().strip().splitlines()) >= 4:
            break
        time.sleep(0.05)
    for process in processes:
        process.kill()
        process.wait()
    assert not (workdir / "metrics.json").exists(), "finished before it could be killed"
    epochs_done = len(log.read_text().strip().splitlines()) - 1
    assert epochs_done >= 3

    chief, worker = runs.multi_worker(runs.python() + [runs.RUN], workdir, epochs,
                                      extra_env={"TMPDIR": str(scratch)})
    assert chief.returncode == 0, chief.stderr[-3000:]
    assert worker.returncode == 0, worker.stderr[-3000:]
    rows = [int(r.split(",")[0]) for r in log.read_text().strip().splitlines()[1:]]
    assert rows[-1] == 9 and rows[epochs_done] in (epochs_done, epochs_done + 1)
    assert "resumed from" in worker.stderr  # the worker restored the chief's backup
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["epochs"] == 10
    assert metrics["distribution"] == {"name": "multi_worker", "replicas": 2, "workers": 2}
    assert "test accuracy" in chief.stdout
    assert "worker 1 finished; the chief writes" in worker.stdout
    # Only the chief's files: no per-worker directory, the worker's scratch deleted.
    assert sorted(p.name for p in workdir.iterdir() if p.name.startswith(".")) == []
    assert list(scratch.iterdir()) == []
    assert "writes into" in worker.stderr and os.fspath(scratch) in worker.stderr
    # Epochs 0-2 ran before the kill (constant learning rate): the single-device run's 2.
    runs.assert_same_training(workdir, single_device)
