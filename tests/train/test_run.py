"""End-to-end tests of tools/run.py: smoke run, resume, gin files, bad input."""

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = os.path.join(REPO, "tools", "run.py")
GIN_DIR = os.path.join(REPO, "gin")
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def _env():
    # PYTHONPATH: the checkout under test, whether or not the package is installed.
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)


def run_tool(*args, timeout=600):
    return subprocess.run([sys.executable, RUN, *args], capture_output=True, text=True,
                          timeout=timeout, env=_env(), cwd=REPO)


def smoke(workdir, *bindings, overwrite=False):
    args = ["--gin_file=gin/smoke.gin", f"--workdir={workdir}"]
    args += [f"--gin_bindings={b}" for b in bindings]
    if overwrite:
        args.append("--overwrite")
    return run_tool(*args)


@pytest.mark.slow
def test_smoke_run_writes_the_workdir(tmp_path):
    workdir = tmp_path / "smoke"
    result = smoke(workdir, "run.landscape = @loss_landscape", "loss_landscape.points = 5",
                   "loss_landscape.num_batches = 2")
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("config.gin", "operative_config.gin", "metrics.json", "train_log.csv",
                 "model.keras", "pruned_init.keras", "pruning_report.json"):
        assert (workdir / name).exists(), name
    assert (workdir / "tensorboard").is_dir()
    assert list((workdir / "tensorboard" / "pruning").glob("events.out.tfevents*"))
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


@pytest.fixture(scope="module")
def finished_smoke(tmp_path_factory):
    """A finished one-epoch smoke run in a workdir where a bad config failed first:
    `(workdir, metrics)`. Tests that change the workdir take a copy (`_copy`)."""
    workdir = tmp_path_factory.mktemp("finished") / "smoke"
    with pytest.raises(ValueError, match="sparsity"):
        run_in_process(workdir, [SMOKE], ["prune_at_init.sparsity = 1.5"])
    return workdir, run_in_process(workdir, [SMOKE], ["run.epochs = 1"])


def _copy(finished_smoke, tmp_path):
    workdir = tmp_path / "smoke"
    shutil.copytree(finished_smoke[0], workdir)
    return workdir


@pytest.mark.slow
def test_rerunning_a_finished_run_reports_it_without_training(finished_smoke, tmp_path):
    workdir = _copy(finished_smoke, tmp_path)
    before = (workdir / "metrics.json").read_text()
    log_before = (workdir / "train_log.csv").read_text()
    operative_before = (workdir / "operative_config.gin").read_text()
    second = run_in_process(workdir, [SMOKE], ["run.epochs = 1"])
    assert second == finished_smoke[1]
    assert (workdir / "metrics.json").read_text() == before
    assert (workdir / "train_log.csv").read_text() == log_before
    assert (workdir / "operative_config.gin").read_text() == operative_before


@pytest.mark.slow
def test_a_different_config_is_refused_in_a_used_workdir(finished_smoke, tmp_path):
    workdir = _copy(finished_smoke, tmp_path)
    with pytest.raises(ValueError, match="different config"):
        run_in_process(workdir, [SMOKE], ["run.epochs = 2"])
    metrics = run_in_process(workdir, [SMOKE], ["run.epochs = 2"], overwrite=True)
    assert metrics["epochs"] == 2


@pytest.mark.slow
def test_resume_after_a_killed_run(tmp_path):
    """Kill -9 the run once an epoch is logged; the re-run resumes, not restarts."""
    workdir = tmp_path / "smoke"
    bindings = ["--gin_bindings=run.epochs = 12"]
    args = [sys.executable, RUN, "--gin_file=gin/smoke.gin", f"--workdir={workdir}", *bindings]
    log = workdir / "train_log.csv"
    with subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          env=_env()) as process:
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
    trained_before = json.loads((workdir / "backup" / "position.json").read_text())[
        "training_seconds"]
    pruning = json.loads((workdir / "stages.json").read_text())["pruning"]["seconds"]
    assert trained_before > 0 and pruning > 0

    result = run_tool("--gin_file=gin/smoke.gin", f"--workdir={workdir}", *bindings)
    assert result.returncode == 0, result.stderr[-3000:]
    epochs = [int(row.split(",")[0]) for row in log.read_text().strip().splitlines()[1:]]
    # Resumed after the last backed-up epoch: the backup is written before the
    # CSV row, so a kill between the two skips one row; it never restarts at 0.
    assert epochs[:epochs_done] == list(range(epochs_done))
    assert epochs[epochs_done] in (epochs_done, epochs_done + 1)
    assert epochs[-1] == 11
    assert "resuming: loading the pruned initial network" in result.stderr
    # The times cover both attempts: the scoring of the first, the training of both,
    # and the total the second attempt's other work on top of them.
    seconds = json.loads((workdir / "metrics.json").read_text())["seconds"]
    assert seconds["pruning"] == pruning
    assert seconds["training"] > trained_before
    assert seconds["total"] > seconds["pruning"] + seconds["training"]


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
@pytest.mark.slow
def test_quickstart_config_runs_a_few_steps(tmp_path):
    # The real config, shortened: 2 steps, one inner scoring step, no Mean-JSV.
    result = run_tool("--gin_file=gin/quickstart.gin", f"--workdir={tmp_path / 'q'}",
                      "--gin_bindings=run.epochs = 1", "--gin_bindings=run.steps_per_epoch = 2",
                      "--gin_bindings=prune_at_init.inner_steps = 1",
                      "--gin_bindings=run.mean_jsv_examples = 0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "q" / "metrics.json").read_text())["test"]["accuracy"] >= 0
    # run scores the seed-keyed view of its splits: no warning about reshuffling pipelines.
    assert "scores the first batches this pipeline yields" not in result.stderr


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
    for name in ("backup", "model.keras", "metrics.json", "pruned_init.keras", "run.lock"):
        assert not (workdir / name).exists(), name


@pytest.mark.slow
def test_a_failed_run_leaves_the_workdir_usable(finished_smoke):
    # The fixture's workdir saw a refused config (sparsity 1.5) before its run.
    _, metrics = finished_smoke
    assert metrics["epochs"] == 1
    assert metrics["pruning"]["prunable_sparsity"] == pytest.approx(0.9, abs=1e-4)


@pytest.mark.slow
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


def _epochs_logged(workdir):
    return [int(row.split(",")[0])
            for row in (workdir / "train_log.csv").read_text().strip().splitlines()[1:]]


def _weights(model):
    return [w.numpy().copy() for w in model.weights]


@pytest.mark.slow
def test_a_failing_post_training_stage_resumes_there_without_training_again(tmp_path):
    """Export fails after training: the re-run neither trains nor repeats the landscape."""
    import keras

    from epsd_tf.train import config, experiment

    workdir = tmp_path / "w"
    text = config.parse([SMOKE], ["run.verbose = 0", "run.epochs = 2",
                                  "run.mean_jsv_examples = 8"])
    landscapes, exported = [], []

    def landscape(model, dataset, directory):
        landscapes.append(directory)
        return {"sharpness_half": 0.5}

    def failing_export(model, directory, **kwargs):
        raise OSError(f"No space left on device: {directory}")

    with pytest.raises(OSError, match="No space left"):
        experiment.run(str(workdir), landscape=landscape, export=failing_export,
                       config_text=text)
    assert not (workdir / "metrics.json").exists()
    assert not (workdir / "backup").exists()  # the saved model replaced it
    model_bytes = (workdir / "model.keras").read_bytes()
    trained = _weights(keras.models.load_model(workdir / "model.keras"))
    stages = json.loads((workdir / "stages.json").read_text())
    assert {"mean_jsv_init", "trained", "landscape"} <= set(stages)
    assert "export" not in stages

    def export(model, directory, **kwargs):
        exported.append(_weights(model))
        return {"artifacts": {}}

    metrics = experiment.run(str(workdir), landscape=landscape, export=export,
                             config_text=text)
    assert _epochs_logged(workdir) == [0, 1]  # each epoch once: no second training
    assert (workdir / "model.keras").read_bytes() == model_bytes
    assert len(landscapes) == 1  # the finished stage is not run again
    assert len(exported) == 1
    for saved, seen in zip(trained, exported[0]):
        np.testing.assert_array_equal(saved, seen)  # the trained model was exported
    assert metrics["export"] == {"artifacts": {}}
    assert metrics["landscape"] == {"sharpness_half": 0.5}
    assert metrics["mean_jsv"]["init"] == stages["mean_jsv_init"]
    assert metrics["test"] == stages["trained"]["test"]
    assert json.loads((workdir / "metrics.json").read_text())["epochs"] == 2


@pytest.mark.slow
@pytest.mark.jax
def test_a_run_killed_after_its_last_backup_resumes_with_the_trained_weights(tmp_path,
                                                                           monkeypatch):
    """Killed after the last epoch's backup but before training was recorded (the GPU
    study's deadline cut a cell in its final Mean-JSV): the re-run trains nothing, and
    evaluates and saves the trained network, not the pruned initial one."""
    import keras

    from epsd_tf.train import config, experiment

    workdir = tmp_path / "w"
    text = config.parse([SMOKE], ["run.verbose = 0", "run.epochs = 2",
                                  "run.mean_jsv_examples = 8"])
    measure = experiment._mean_jsv

    def killed_in_the_trained_mean_jsv(model, images, training):
        if not training:  # after fit, the evaluation and the trained model's saving
            raise KeyboardInterrupt("SIGINT from the deadline")
        return measure(model, images, training=training)

    monkeypatch.setattr(experiment, "_mean_jsv", killed_in_the_trained_mean_jsv)
    with pytest.raises(KeyboardInterrupt):
        experiment.run(str(workdir), config_text=text)
    monkeypatch.undo()
    assert json.loads((workdir / "backup" / "position.json").read_text())["epoch"] == 2
    assert "trained" not in json.loads((workdir / "stages.json").read_text())
    trained = _weights(keras.models.load_model(workdir / "model.keras"))
    initial = _weights(keras.models.load_model(workdir / "pruned_init.keras"))
    assert any(not np.array_equal(a, b) for a, b in zip(trained, initial))

    metrics = experiment.run(str(workdir), config_text=text)
    assert _epochs_logged(workdir) == [0, 1]  # nothing trained again
    assert not (workdir / "backup").exists()
    for saved, resumed in zip(trained, _weights(keras.models.load_model(
            workdir / "model.keras"))):
        np.testing.assert_array_equal(saved, resumed)
    assert metrics["mean_jsv"]["trained"]["mean"] > 0
    assert metrics["test"]["accuracy"] > 0.5  # smoke.gin's classes are learnable; init: ~0.1


@pytest.mark.slow
def test_a_run_killed_in_the_landscape_stage_resumes_after_training(tmp_path):
    workdir = tmp_path / "smoke"
    bindings = ["--gin_bindings=run.landscape = @loss_landscape",
                "--gin_bindings=loss_landscape.points = 201",
                "--gin_bindings=loss_landscape.num_batches = None"]
    args = [sys.executable, RUN, "--gin_file=gin/smoke.gin", f"--workdir={workdir}", *bindings]
    stages = workdir / "stages.json"
    with subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          env=_env()) as process:
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None:
            if stages.exists() and "trained" in json.loads(stages.read_text()):
                break
            time.sleep(0.05)
        process.kill()
    assert process.returncode != 0, "the run finished before it could be killed"
    assert not (workdir / "metrics.json").exists()
    assert "landscape" not in json.loads(stages.read_text())
    model_bytes = (workdir / "model.keras").read_bytes()

    result = run_tool("--gin_file=gin/smoke.gin", f"--workdir={workdir}", *bindings)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming after training" in result.stderr
    assert _epochs_logged(workdir) == [0, 1]
    assert (workdir / "model.keras").read_bytes() == model_bytes
    assert len(json.loads((workdir / "landscape" / "landscape.json").read_text())["loss"]) == 201


def test_post_training_stages_are_checked_before_training(tmp_path, monkeypatch):
    workdir = tmp_path / "w"
    workdir.mkdir()
    (workdir / "export").write_text("a file where the export directory goes")
    with pytest.raises(ValueError, match="export.*not a directory"):
        run_in_process(workdir, [SMOKE], ["run.export = @export_all"])
    assert not (workdir / "train_log.csv").exists()
    assert not (workdir / "pruned_init.keras").exists()

    from epsd_tf.export import tfmot_adapter

    def missing():
        raise ImportError("The TF-MOT adapter needs ['tensorflow_model_optimization']")
    monkeypatch.setattr(tfmot_adapter, "check_requirements", missing)
    with pytest.raises(ImportError, match="tensorflow_model_optimization"):
        run_in_process(tmp_path / "p", [SMOKE], ["run.pqat = @run_pqat"])
    assert not (tmp_path / "p" / "train_log.csv").exists()


HOLD_LOCK = ("import sys, time\n"
             "from epsd_tf import files\n"
             "with files.locked(sys.argv[1]):\n"
             "    print('held', flush=True)\n"
             "    time.sleep(600)\n")


@pytest.mark.slow
def test_one_run_per_workdir_and_a_dead_owners_lock_is_taken_over(tmp_path):
    from epsd_tf import files

    workdir = tmp_path / "w"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(workdir / "run.lock")],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.perf_counter()
        with pytest.raises(files.LockHeldError, match=f"pid {holder.pid}"):
            run_in_process(workdir, [SMOKE], ["run.epochs = 1"])
        assert time.perf_counter() - start < 5  # at once, before loading data
        assert os.listdir(workdir) == ["run.lock"]  # nothing pruned, trained or written
    finally:
        holder.kill()
        holder.wait()
    # The holder was killed without releasing: its lock is stale and is taken over.
    assert (workdir / "run.lock").exists()
    metrics = run_in_process(workdir, [SMOKE], ["run.epochs = 1"])
    assert metrics["epochs"] == 1
    assert not (workdir / "run.lock").exists()  # released when the run ends


@pytest.mark.slow
def test_a_second_tools_run_on_a_busy_workdir_fails_naming_the_owner(tmp_path):
    workdir = tmp_path / "smoke"
    args = ["--gin_file=gin/smoke.gin", f"--workdir={workdir}",
            "--gin_bindings=run.epochs = 30"]
    log = workdir / "train_log.csv"
    with subprocess.Popen([sys.executable, RUN, *args], cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL,
                          env=_env()) as first:
        try:
            deadline = time.time() + 300
            while time.time() < deadline and not log.exists():
                time.sleep(0.05)
            second = run_tool(*args)
            assert first.poll() is None, "the first run ended before the second started"
        finally:
            first.kill()
    assert second.returncode != 0
    assert f"pid {first.pid}" in second.stderr and "is held by host" in second.stderr
