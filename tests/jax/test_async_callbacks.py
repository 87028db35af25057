"""A run's callbacks leave Keras' asynchronous step dispatch on (JAX).

Keras (JAX) runs the batch-end callbacks in a thread, so the training loop
never waits for a step's logs, only when none of the callbacks has a per-step
hook (`on_train_batch_end`/`on_batch_end`); one such hook makes it read every
step's logs back in the loop, waiting for the device at every step. A probe
marked `async_safe` sees which way a `fit` went: in the loop's thread (sync)
or in another (async).
"""

import threading

import keras
import pytest

from epsd_tf.train import callbacks
from tests import students

pytestmark = pytest.mark.jax


class Probe(keras.callbacks.Callback):
    async_safe = True  # dispatched asynchronously whenever the others allow it

    def __init__(self):
        super().__init__()
        self.threads = set()

    def on_train_batch_end(self, batch, logs=None):
        self.threads.add(threading.current_thread() is threading.main_thread())


def _fit(workdir, backup_every_steps):
    workdir.mkdir()
    images, _, labels = students.arrays(16)
    model = students.conv_student(seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    probe = Probe()
    history = model.fit(images, labels, batch_size=4, epochs=2, verbose=0,
                        callbacks=callbacks.standard_callbacks(
                            str(workdir), 4, backup_every_steps) + [probe])
    return probe, history


def test_the_run_callbacks_keep_step_dispatch_asynchronous(tmp_path):
    probe, history = _fit(tmp_path / "epoch", None)
    assert probe.threads == {False}  # every step's callbacks ran outside the loop
    # EpochTimer counts the optimizer's steps instead: 16 images / 4 = 4 per epoch.
    seconds = history.history["epoch_seconds"]
    assert [round(ips * s / 4) for ips, s in zip(history.history["images_per_second"],
                                                  seconds)] == [4, 4]


def test_mid_epoch_backups_need_the_per_step_hook(tmp_path):
    probe, _ = _fit(tmp_path / "steps", 2)
    assert probe.threads == {True}  # StepBackup: the loop runs the callbacks itself
    assert callbacks.Backup.position(str(tmp_path / "steps" / "backup")) == (2, 0)
