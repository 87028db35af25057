"""The training backups (`epsd_tf.train.callbacks.Backup`, `StepBackup`): when they are written."""

import keras
import pytest

from epsd_tf.train import callbacks
from tests import students

pytestmark = pytest.mark.jax


class Recorded(callbacks.StepBackup):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.positions = []

    def _save(self, epoch, batches_done):
        self.positions.append((epoch, batches_done))
        super()._save(epoch, batches_done)


@pytest.mark.parametrize("every, positions", [
    (2, [(0, 2), (1, 0), (1, 2), (2, 0)]),  # not (0, 4): the epoch's end backs it up
    (3, [(0, 3), (1, 0), (1, 3), (2, 0)]),
    (5, [(1, 0), (2, 0)]),
])
def test_step_backups_leave_the_epochs_last_batch_to_the_epoch_end(tmp_path, every, positions):
    images, _, labels = students.arrays(16)
    model = students.conv_student(seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    backup = Recorded(str(tmp_path / "backup"), every)
    model.fit(images, labels, batch_size=4, epochs=2, verbose=0, callbacks=[backup])
    assert backup.positions == positions  # 4 batches an epoch
    assert callbacks.Backup.position(str(tmp_path / "backup")) == (2, 0)
