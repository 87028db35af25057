"""tools/run.py on gin/smoke.gin under JAX, TensorFlow blocked: workdir and resume.

The same workdir files as the TensorFlow run (tests/train/test_run.py), except
`tensorboard/`, which needs TensorFlow's summary writer.
"""

import json
import subprocess
import time

import pytest

from tests.jax import tf_free

pytest.importorskip("jax")

WORKDIR_FILES = ("config.gin", "operative_config.gin", "metrics.json", "train_log.csv",
                 "model.keras", "pruned_init.keras", "pruning_report.json", "stages.json")


def _smoke(workdir, *bindings, **popen):
    return tf_free.tool("run.py", "--gin_file=gin/smoke.gin", f"--workdir={workdir}",
                        *[f"--gin_bindings={b}" for b in bindings], **popen)


@pytest.mark.slow
def test_smoke_run_on_jax_writes_the_workdir(tmp_path):
    workdir = tmp_path / "smoke"
    result = _smoke(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in WORKDIR_FILES:
        assert (workdir / name).exists(), name
    assert not (workdir / "backup").exists()
    assert "TensorBoard logs need TensorFlow" in result.stderr
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.5  # learnable synthetic classes, 2 epochs
    assert metrics["pruning"]["prunable_sparsity"] == pytest.approx(0.9, abs=1e-4)
    assert metrics["parameters"]["sparsity_trainable"] > 0.85
    assert len((workdir / "train_log.csv").read_text().strip().splitlines()) == 1 + 2
    assert "test accuracy" in result.stdout


@pytest.mark.slow
def test_resume_after_a_killed_run_on_jax(tmp_path):
    workdir = tmp_path / "smoke"
    log = workdir / "train_log.csv"
    with _smoke(workdir, "run.epochs = 12", stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL) as process:
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None:
            if log.exists() and len(log.read_text().strip().splitlines()) >= 3:
                break
            time.sleep(0.05)
        process.kill()
    assert process.returncode != 0, "the run finished before it could be killed"
    assert (workdir / "backup").is_dir() and not (workdir / "metrics.json").exists()
    epochs_done = len(log.read_text().strip().splitlines()) - 1

    result = _smoke(workdir, "run.epochs = 12")
    assert result.returncode == 0, result.stderr[-3000:]
    epochs = [int(row.split(",")[0]) for row in log.read_text().strip().splitlines()[1:]]
    assert epochs[:epochs_done] == list(range(epochs_done))
    assert epochs[epochs_done] in (epochs_done, epochs_done + 1)
    assert epochs[-1] == 11
    assert "resuming: loading the pruned initial network" in result.stderr
