"""Issue 16's driver (tools/benchmarks/data_parallel.py) on two XLA host devices, TF-free.

One `--smoke` run of the whole driver (throughput, two one-device seeds, a
data-parallel run killed mid-epoch and resumed) checks the JSON it writes;
its workdirs then feed the checks the cases they must refuse: masks that
differ (another seed's, and one flipped bit) and a run that did not resume.
"""

import io
import json
import os
import shutil
import sys
import zipfile

import h5py
import numpy as np
import pytest

from tests.jax import tf_free

sys.path.insert(0, os.path.join(tf_free.REPO, "tools", "benchmarks"))

import data_parallel_checks as checks  # noqa: E402

pytest.importorskip("jax")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("data_parallel")
    out, scratch = root / "out", root / "scratch"
    result = tf_free.tool("benchmarks/data_parallel.py", "--smoke", "--seeds=2",
                          f"--out={out}", f"--scratch={scratch}", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, scratch, result.stdout


@pytest.mark.slow
def test_the_driver_writes_sane_figures_on_two_host_devices(smoke):
    out, scratch, stdout = smoke
    assert sorted(p.name for p in out.iterdir()) == ["data_parallel.json", "logs.txt",
                                                     "summary.txt"]
    report = json.loads((out / "data_parallel.json").read_text())
    assert report["devices"] == 2 and report["gpus"] == []
    phases = report["phases"]
    assert {name: p["status"] for name, p in phases.items()} == {
        "throughput": "done", "one_device": "done", "data_parallel": "done"}
    throughput = phases["throughput"]
    assert throughput["replicas"] == 2 and len(throughput["devices"]) == 2
    assert throughput["batch"] == {"one_device": 8, "data_parallel": 16}
    assert throughput["ratio"] > 0 and throughput["efficiency"] == throughput["ratio"] / 2
    for side in ("one_device", "data_parallel"):
        assert throughput["images_per_second"][side] > 0
        assert len(throughput["per_round"][side]) == throughput["rounds"] == 2
    assert throughput["method"] == "dlb" and throughput["sparsity"] == pytest.approx(0.9)
    runs = phases["one_device"]["runs"]
    assert sorted(runs) == ["0", "1"] and all(r["exit"] == 0 for r in runs.values())
    assert all(0.0 <= r["accuracy"] <= 100.0 for r in runs.values())
    parallel = phases["data_parallel"]
    assert parallel["exit"] == 0 and parallel["resume"]["passed"], parallel["resume"]
    killed = parallel["resume"]["killed_at"]
    assert killed["epoch"] >= 1 and killed["batches_done"] > 0
    assert parallel["masks"]["identical"] and parallel["masks"]["masks"] > 0
    check = parallel["accuracy_check"]
    assert check["one_device"] == [runs["0"]["accuracy"], runs["1"]["accuracy"]]
    assert check["difference"] == pytest.approx(parallel["accuracy"] - runs["0"]["accuracy"])
    summary = (out / "summary.txt").read_text()
    assert summary in stdout and "masks bit-identical" in summary and "resume passed" in summary
    assert "DataParallel over 2 devices" in (out / "logs.txt").read_text()
    metrics = json.loads((scratch / "data_parallel_seed0" / "metrics.json").read_text())
    assert metrics["distribution"] == {"name": "data_parallel", "replicas": 2, "workers": 1}


@pytest.mark.slow
def test_masks_of_another_seed_or_one_flipped_bit_differ(smoke, tmp_path):
    _, scratch, _ = smoke
    seed0 = scratch / "one_device_seed0" / checks.PRUNED_INIT
    other_seed = checks.compare_masks(seed0, scratch / "one_device_seed1" / checks.PRUNED_INIT)
    assert not other_seed["identical"] and other_seed["differing"]
    flipped = tmp_path / "flipped.keras"
    name = _flip_one_mask_bit(seed0, flipped)
    result = checks.compare_masks(seed0, flipped)
    assert not result["identical"] and result["differing"] == [name]
    assert result["differing_entries"] == 1
    assert not result["all_weights_identical"]
    assert checks.compare_masks(seed0, seed0)["identical"]


@pytest.mark.slow
def test_a_run_that_did_not_resume_fails_the_resume_check(smoke):
    _, scratch, _ = smoke
    workdir = scratch / "one_device_seed0"  # finished without ever being killed
    log = (scratch / "one_device_seed0.log").read_text()
    position = {"epoch": 1, "batches_done": 3, "weights": "epoch1-batch3.weights.h5"}
    result = checks.check_resume(str(workdir), position, log, epochs=3)
    assert not result["passed"]
    assert any("trained from scratch" in p for p in result["problems"])
    assert any("scored again" in p for p in result["problems"])
    resumed_log = (scratch / "data_parallel_resumed.log").read_text()
    dp = scratch / "data_parallel_seed0"
    assert not checks.check_resume(str(dp), None, resumed_log, epochs=3)["passed"]
    wrong_place = dict(position, epoch=2, weights="epoch2-batch3.weights.h5")
    assert not checks.check_resume(str(dp), wrong_place, resumed_log, epochs=3)["passed"]


@pytest.mark.slow
def test_the_driver_process_never_starts_a_jax_backend(smoke):
    """It must leave the GPUs to its subprocesses: the checks read files with h5py."""
    _, scratch, _ = smoke
    code = ("import sys\n"
            f"sys.path.insert(0, {os.path.join(tf_free.REPO, 'tools', 'benchmarks')!r})\n"
            "import data_parallel, data_parallel_checks as c\n"
            f"print(c.compare_masks({str(scratch / 'one_device_seed0' / 'pruned_init.keras')!r},"
            f" {str(scratch / 'data_parallel_seed0' / 'pruned_init.keras')!r})['identical'])\n"
            "from jax._src import xla_bridge\n"
            "print('backends', sorted(xla_bridge._backends))\n")
    result = tf_free.python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["True", "backends", "[]"]


def test_accuracy_within_noise_follows_the_seed_spread_with_a_floor():
    close = checks.compare_accuracy(92.10, [92.30, 91.60])  # spread 0.7 -> bound 1.4
    assert close["within_noise"] and close["bound"] == pytest.approx(1.4)
    assert close["difference"] == pytest.approx(-0.2)
    far = checks.compare_accuracy(90.0, [92.3, 92.25])  # spread 0.05 -> floor 0.5
    assert not far["within_noise"] and far["bound"] == checks.NOISE_FLOOR
    alone = checks.compare_accuracy(92.0, [92.4])
    assert alone["seed_spread"] is None and alone["within_noise"]
    with pytest.raises(ValueError, match="same-seed"):
        checks.compare_accuracy(92.0, [])


def _flip_one_mask_bit(source, target) -> str:
    """Copies a `.keras` file with one mask entry flipped; returns that mask's path."""
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    buffer = io.BytesIO(members[checks.WEIGHTS])
    with h5py.File(buffer, "r+") as weights:
        name = sorted(checks.masks(str(source)))[0]
        mask = np.array(weights[name])
        mask.flat[0] = 1.0 - mask.flat[0]
        weights[name][...] = mask
    members[checks.WEIGHTS] = buffer.getvalue()
    with zipfile.ZipFile(target, "w") as archive:
        for member, content in members.items():
            archive.writestr(member, content)
    shutil.copystat(source, target)
    return name


def test_a_budget_too_small_for_a_phase_skips_it_and_says_why(tmp_path):
    out = tmp_path / "out"
    result = tf_free.tool("benchmarks/data_parallel.py", "--smoke", "--budget_s=0",
                          f"--out={out}", f"--scratch={tmp_path / 'scratch'}")
    assert result.returncode == 0, result.stderr[-3000:]
    phases = json.loads((out / "data_parallel.json").read_text())["phases"]
    assert [p["status"] for p in phases.values()] == ["skipped"] * 3
    assert "of the budget left" in phases["throughput"]["why"]
    assert sorted(os.listdir(tmp_path / "scratch")) == []  # nothing was started
    assert "throughput: skipped" in result.stdout
