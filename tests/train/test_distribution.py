"""`run.distribution`: names, TF_CONFIG, batch checks, refusal before any work."""

import json
import socket

import keras
import numpy as np
import pytest

from epsd_tf import data, models, optim
from epsd_tf.train import distribution, experiment

pytestmark = pytest.mark.jax  # backend-neutral: also in the JAX suite

TWO_WORKERS = {"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]},
               "task": {"type": "worker", "index": 1}}


def test_tf_config_orders_the_chief_first():
    config = {"cluster": {"chief": ["c:1"], "worker": ["w0:1", "w1:1"]},
              "task": {"type": "worker", "index": 1}}
    cluster = distribution.parse_tf_config(json.dumps(config))
    assert cluster.addresses == ("c:1", "w0:1", "w1:1")
    assert cluster.index == 2 and not cluster.is_chief
    chief = distribution.parse_tf_config(json.dumps(dict(config, task={"type": "chief"})))
    assert chief.index == 0 and chief.is_chief
    # Without a chief job, worker 0 is the chief (as in MultiWorkerMirroredStrategy).
    assert distribution.parse_tf_config(json.dumps(
        dict(TWO_WORKERS, task={"type": "worker", "index": 0}))).is_chief


@pytest.mark.parametrize("text, message", [
    (None, "needs the TF_CONFIG"),
    ("{not json", "not valid JSON"),
    ('["a"]', "'cluster' and 'task'"),
    (json.dumps(dict(TWO_WORKERS, cluster={"worker": ["a:1"], "ps": ["b:1"]})), "['ps']"),
    (json.dumps(dict(TWO_WORKERS, cluster={"worker": ["no-port"]})), "'host:port'"),
    (json.dumps(dict(TWO_WORKERS, cluster={"worker": []})), "non-empty list"),
    (json.dumps(dict(TWO_WORKERS, task={"type": "evaluator", "index": 0})), "'evaluator'"),
    (json.dumps(dict(TWO_WORKERS, task={"type": "worker", "index": 2})), "outside 0 .. 1"),
])
def test_a_malformed_tf_config_is_refused_naming_the_problem(text, message):
    with pytest.raises(ValueError, match="TF_CONFIG") as error:
        distribution.parse_tf_config(text)
    assert message in str(error.value)


def test_unknown_names_and_misplaced_tpu_addresses_are_refused():
    with pytest.raises(ValueError, match="'data_parallel', 'multi_worker', 'tpu'"):
        distribution.plan("mirrored")
    with pytest.raises(ValueError, match="run.tpu"):
        distribution.plan(None, tpu="my-tpu")
    with pytest.raises(ValueError, match="only applies to run.distribution = 'tpu'"):
        distribution.plan("data_parallel", tpu="my-tpu")
    assert distribution.plan(None) is distribution.ONE_DEVICE


def test_multi_worker_without_a_cluster_is_refused(monkeypatch):
    if keras.backend.backend() == "jax":
        pytest.skip("JAX falls back to its own cluster detection (tests/jax)")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs the TF_CONFIG"):
        distribution.plan("multi_worker")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')
    with pytest.raises(ValueError, match="'cluster' and 'task'"):
        distribution.plan("multi_worker")


def test_batches_must_divide_over_the_replicas():
    plan = distribution.Plan(name="data_parallel", replicas=4, eval_divisor=4)
    plan.check_batches(128, 256, (10000, 6000))
    with pytest.raises(ValueError, match="global batch size 30 .* 4 replicas"):
        plan.check_batches(30)
    with pytest.raises(ValueError, match="evaluation batch of 2 examples"):
        plan.check_batches(128, 256, (10000, 258))
    # tf.distribute splits any evaluation batch: only the training batch counts.
    distribution.Plan(name="data_parallel", replicas=4).check_batches(128, 256, (3,))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tpu_without_a_tpu_names_the_address_it_tried():
    if keras.backend.backend() == "jax":
        with pytest.raises(ValueError, match="JAX sees no TPU, only \\['cpu'\\]"):
            distribution.plan("tpu")
        with pytest.raises(ValueError, match="JAX finds its TPU devices itself"):
            distribution.plan("tpu", tpu="local")
        return
    with pytest.raises(ValueError, match="no TPU found at 'local'"):
        distribution.plan("tpu")
    address = f"grpc://127.0.0.1:{_free_port()}"
    with pytest.raises(ValueError, match=f"no TPU at '{address}'"):
        distribution.plan("tpu", tpu=address)


def _smoke_run(workdir, **settings):
    def load_data():
        return data.load("synthetic", source="synthetic", batch_size=32, seed=0)

    return experiment.run(
        str(workdir), load_data=load_data, build_model=lambda **kw: models.build(
            "small_cnn", **kw), make_optimizer=lambda **kw: optim.make_optimizer(
            learning_rate=0.01, schedule="constant", **kw), **settings)


@pytest.mark.parametrize("settings, message", [
    ({"distribution": "mirrored"}, "unknown run.distribution 'mirrored'"),
    ({"distribution": "tpu", "tpu": f"grpc://127.0.0.1:{_free_port()}"}, "no TPU at"),
])
def test_a_bad_distribution_is_refused_before_the_workdir_exists(tmp_path, settings, message):
    if keras.backend.backend() == "jax" and "tpu" in settings:
        message = "JAX finds its TPU devices itself"
    workdir = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        _smoke_run(workdir, **settings)
    assert not workdir.exists()


def test_data_parallel_over_the_devices_or_a_warning_with_one(caplog):
    devices = keras.distribution.list_devices() if keras.backend.backend() == "jax" else None
    plan = distribution.plan("data_parallel")
    if devices is not None and len(devices) > 1:  # the JAX suite: two host devices
        assert (plan.name, plan.replicas, plan.eval_divisor) == ("data_parallel",
                                                                 len(devices), len(devices))
        assert plan.is_chief and not plan.sync_batchnorm
        return
    assert plan is distribution.ONE_DEVICE  # one TF CPU device in this process
    assert "sees one device" in caplog.text


def test_a_backup_carries_the_training_time_of_every_attempt(tmp_path):
    """A resumed `fit` adds its time to the time recorded by the backup it resumed from."""
    import time

    from epsd_tf.train import callbacks
    from tests import students

    images, _, labels = students.arrays(16)
    backup = str(tmp_path / "backup")
    assert callbacks.Backup.training_seconds(backup) == 0.0  # no backup yet

    class Slow(keras.callbacks.Callback):  # 50 ms per step: times far above clock noise
        def on_train_batch_end(self, batch, logs=None):
            time.sleep(0.05)

    student = students.conv_student(seed=0)
    student.compile(optimizer=keras.optimizers.SGD(0.1),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    student.fit(images, labels, batch_size=8, epochs=1, verbose=0,
                callbacks=[callbacks.Backup(backup), Slow()])
    first = callbacks.Backup.training_seconds(backup)
    assert first >= 0.1  # two steps of at least 50 ms
    student.fit(images, labels, batch_size=8, initial_epoch=1, epochs=2, verbose=0,
                callbacks=[callbacks.Backup(backup, start=(1, 0)), Slow()])
    assert callbacks.Backup.position(backup) == (2, 0)
    assert callbacks.Backup.training_seconds(backup) >= first + 0.1


def test_a_worker_resumes_from_the_chiefs_backup_and_writes_its_own(tmp_path):
    """`Backup(restore_from=)`: another worker's restore source is the chief's backup."""
    from epsd_tf.train import callbacks
    from tests import students

    images, _, labels = students.arrays(16)
    chief, worker = tmp_path / "chief_backup", tmp_path / "worker_backup"

    def model(seed):
        student = students.conv_student(seed=seed)
        student.compile(optimizer=keras.optimizers.SGD(0.1),
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return student

    trained = model(0)
    trained.fit(images, labels, batch_size=8, epochs=1, verbose=0,
                callbacks=[callbacks.Backup(str(chief))])
    assert callbacks.Backup.position(str(chief)) == (1, 0)

    resumed = model(1)  # other initial weights, replaced by the chief's backup
    recorded = []

    class Record(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            recorded.extend(w.copy() for w in self.model.get_weights())

    resumed.fit(images, labels, batch_size=8, initial_epoch=1, epochs=2, verbose=0,
                callbacks=[callbacks.Backup(str(worker), restore_from=str(chief)), Record()])
    for got, want in zip(recorded, trained.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert callbacks.Backup.position(str(worker)) == (2, 0)  # its own backup, in its dir
    assert callbacks.Backup.position(str(chief)) == (1, 0)  # the chief's is untouched
