"""End-to-end tests of tools/run.py: smoke run, resume, gin files, bad input."""

import json
import os
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = os.path.join(REPO, "tools", "run.py")
GIN_DIR = os.path.join(REPO, "gin")
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def run_tool(*args, timeout=600):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, RUN, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)


def smoke(workdir, *bindings, overwrite=False):
    args = ["--gin_file=gin/smoke.gin", f"--workdir={workdir}"]
    args += [f"--gin_bindings={b}" for b in bindings]
    if overwrite:
        args.append("--overwrite")
    return run_tool(*args)


def test_smoke_run_writes_the_workdir(tmp_path):
    workdir = tmp_path / "smoke"
    result = smoke(workdir, "run.landscape = @loss_landscape", "loss_landscape.points = 5",
                   "loss_landscape.num_batches = 2")
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("config.gin", "operative_config.gin", "metrics.json", "train_log.csv",
                 "model.keras", "pruned_init.keras", "pruning_report.json"):
        assert (workdir / name).exists(), name
    assert (workdir / "tensorboard").is_dir()
    assert not (workdir / "backup").exists()  # deleted once training finished
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0
    assert metrics["parameters"]["trainable"] > 0
    assert metrics["seconds"]["total"] > 0
    # The synthetic classes (4) are learnable: clearly above chance after 2 epochs.
    assert metrics["test"]["accuracy"] > 0.5
    assert metrics["pruning"]["prunable_sparsity"] == pytest.approx(0.9, abs=1e-4)
    assert metrics["parameters"]["sparsity_trainable"] > 0.85
    landscape = json.loads((workdir / "landscape" / "landscape.json").read_text())
    assert len(landscape["alphas"]) == 5 and landscape["settings"]["num_batches"] == 2
    assert metrics["landscape"]["loss_at_0"] == pytest.approx(landscape["loss"][2])
    assert (workdir / "landscape" / "landscape_1d.png").exists()
    log_lines = (workdir / "train_log.csv").read_text().strip().splitlines()
    assert len(log_lines) == 1 + 2  # header + one row per epoch
    assert "test accuracy" in result.stdout
    operative = (workdir / "operative_config.gin").read_text()
    assert "run.epochs = 2" in operative


def test_rerunning_a_finished_run_reports_it_without_training(tmp_path):
    workdir = tmp_path / "smoke"
    first = run_in_process(workdir, [SMOKE], ["run.epochs = 1"])
    before = (workdir / "metrics.json").read_text()
    log_before = (workdir / "train_log.csv").read_text()
    operative_before = (workdir / "operative_config.gin").read_text()
    second = run_in_process(workdir, [SMOKE], ["run.epochs = 1"])
    assert second == first
    assert (workdir / "metrics.json").read_text() == before
    assert (workdir / "train_log.csv").read_text() == log_before
    assert (workdir / "operative_config.gin").read_text() == operative_before


def test_a_different_config_is_refused_in_a_used_workdir(tmp_path):
    workdir = tmp_path / "smoke"
    run_in_process(workdir, [SMOKE], ["run.epochs = 1"])
    with pytest.raises(ValueError, match="different config"):
        run_in_process(workdir, [SMOKE], ["run.epochs = 2"])
    metrics = run_in_process(workdir, [SMOKE], ["run.epochs = 2"], overwrite=True)
    assert metrics["epochs"] == 2


def test_resume_after_a_killed_run(tmp_path):
    """Kill -9 the run once an epoch is logged; the re-run resumes, not restarts."""
    workdir = tmp_path / "smoke"
    bindings = ["--gin_bindings=run.epochs = 12"]
    args = [sys.executable, RUN, "--gin_file=gin/smoke.gin", f"--workdir={workdir}", *bindings]
    log = workdir / "train_log.csv"
    with subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")) as process:
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None:
            if log.exists() and len(log.read_text().strip().splitlines()) >= 3:
                break
            time.sleep(0.05)
        process.kill()
    assert process.returncode != 0, "the run finished before it could be killed"
    assert (workdir / "backup").is_dir()
    assert not (workdir / "metrics.json").exists()
    epochs_done = len(log.read_text().strip().splitlines()) - 1

    result = run_tool("--gin_file=gin/smoke.gin", f"--workdir={workdir}", *bindings)
    assert result.returncode == 0, result.stderr[-3000:]
    epochs = [int(row.split(",")[0]) for row in log.read_text().strip().splitlines()[1:]]
    # Resumed after the last backed-up epoch: the backup is written before the
    # CSV row, so a kill between the two skips one row; it never restarts at 0.
    assert epochs[:epochs_done] == list(range(epochs_done))
    assert epochs[epochs_done] in (epochs_done, epochs_done + 1)
    assert epochs[-1] == 11
    assert "resuming: loading the pruned initial network" in result.stderr


@pytest.mark.parametrize("gin_file", sorted(f for f in os.listdir(GIN_DIR) if f.endswith(".gin")))
def test_every_gin_file_parses(gin_file):
    from epsd_tf.train import config
    text = config.parse([os.path.join(GIN_DIR, gin_file)])
    assert "run." in text or gin_file == "base.gin"
    first_lines = open(os.path.join(GIN_DIR, gin_file)).read().splitlines()[:12]
    # Each file opens with the command that runs it (base.gin is only included).
    if gin_file != "base.gin":
        assert any(tool in line for line in first_lines
                   for tool in ("tools/run.py", "tools/sweep.py", "make ")), gin_file
        assert any("Expected" in line for line in first_lines), gin_file


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST),
                    reason="needs `apt-get install dataset-fashion-mnist` (make test does it)")
def test_quickstart_config_runs_a_few_steps(tmp_path):
    # The real config, shortened: 2 steps, one inner scoring step, no Mean-JSV.
    result = run_tool("--gin_file=gin/quickstart.gin", f"--workdir={tmp_path / 'q'}",
                      "--gin_bindings=run.epochs = 1", "--gin_bindings=run.steps_per_epoch = 2",
                      "--gin_bindings=prune_at_init.inner_steps = 1",
                      "--gin_bindings=run.mean_jsv_examples = 0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "q" / "metrics.json").read_text())["test"]["accuracy"] >= 0


SMOKE = os.path.join(GIN_DIR, "smoke.gin")


def run_in_process(workdir, gin_files, bindings=(), overwrite=False):
    from epsd_tf.train import config
    text = config.parse(gin_files, ["run.verbose = 0", *bindings])
    return config.run_from_config(str(workdir), text, overwrite=overwrite)


@pytest.mark.parametrize("gin_files, bindings, error, message", [
    (["gin/nope.gin"], [], FileNotFoundError, "does not exist"),
    ([SMOKE], ["run.not_a_parameter = 1"], ValueError, "not_a_parameter"),
    ([SMOKE], ["nonexistent.x = 1"], ValueError, "nonexistent"),
    ([SMOKE], ["load.dataset = 'no_such_data'", "load.source = 'auto'"], ValueError,
     "no_such_data"),
    ([SMOKE], ["build.name = 'resnet7'"], ValueError, "resnet20"),
    ([SMOKE], ["run.method = 'dlbx'"], ValueError, "dlb"),
    ([SMOKE], ["load.source = 'idx'", "load.path = '/nonexistent/dir'"], FileNotFoundError,
     "/nonexistent/dir"),
    ([SMOKE], ["prune_at_init.sparsity = 1.5"], ValueError, "sparsity"),
    ([SMOKE], ["prune_at_init.scorer = 'snap'"], ValueError, "snip"),
    ([SMOKE], ["load.batch_size = 100000"], ValueError, "batch"),
    ([SMOKE], ["DLB.temperature = 0.0"], ValueError, "temperature"),
    ([SMOKE], ["run.epochs = 0"], ValueError, "epochs"),
])
def test_bad_input_fails_clearly_before_training(tmp_path, gin_files, bindings, error,
                                                 message):
    workdir = tmp_path / "bad"
    with pytest.raises(error, match=message):
        run_in_process(workdir, gin_files, bindings)
    # Nothing that would make the next run resume or refuse was written.
    for name in ("backup", "model.keras", "metrics.json", "pruned_init.keras"):
        assert not (workdir / name).exists(), name


def test_a_failed_run_leaves_the_workdir_usable(tmp_path):
    workdir = tmp_path / "w"
    with pytest.raises(ValueError, match="sparsity"):
        run_in_process(workdir, [SMOKE], ["prune_at_init.sparsity = 1.5"])
    metrics = run_in_process(workdir, [SMOKE], ["run.epochs = 1"])
    assert metrics["epochs"] == 1
    assert metrics["pruning"]["prunable_sparsity"] == pytest.approx(0.9, abs=1e-4)


def test_export_and_pqat_stages_through_gin(tmp_path):
    workdir = tmp_path / "edge"
    metrics = run_in_process(workdir, [SMOKE], [
        "run.export = @export_all",
        "export_all.formats = ('keras', 'float32', 'float32_sparse', 'int8')",
        "export_all.latency_runs = 0",
        "run.pqat = @run_pqat",
        "run_pqat.max_train_examples = 64",
        "run_pqat.max_test_examples = 64",
    ])
    for name in ("model.keras", "model_float32.tflite", "model_float32_sparse.tflite",
                 "model_int8.tflite", "export_report.json"):
        assert (workdir / "export" / name).exists(), name
    assert (workdir / "pqat" / "model_pqat_int8.tflite").exists()
    assert (workdir / "pqat" / "pqat_report.json").exists()
    assert "export" in metrics and "pqat" in metrics
    artifacts = metrics["export"]["artifacts"]
    assert artifacts["float32_sparse"]["bytes"] < artifacts["float32"]["bytes"]
    assert metrics["pqat"]["target_sparsity"] == pytest.approx(
        metrics["pruning"]["prunable_sparsity"], abs=0.005)
    assert metrics["pqat"]["tflite_weight_sparsity"] == pytest.approx(
        metrics["pqat"]["target_sparsity"], abs=0.005)
