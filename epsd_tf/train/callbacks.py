"""Callbacks every experiment run attaches (logging, resume, timing)."""

from __future__ import annotations

import os
import sys
import time

import keras
from absl import logging

from epsd_tf import backends, files

# No callback of a run has a per-step hook unless it must (`StepBackup`): Keras
# (JAX) dispatches the batch-end callbacks asynchronously only when none of them
# overrides `on_train_batch_end`/`on_batch_end`; otherwise it converts every
# step's logs to Python numbers in the training loop, which waits for the
# device at every step (`tools/benchmarks/gpu.py`, part "callbacks", measures the cost).


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_seconds` and `images_per_second` to each epoch's logs.

    The steps of an epoch are the optimizer's iterations over it (read at the
    epoch's ends, where the training state is synced), so it needs no per-step
    hook.

    Args:
        images_per_step: images the network sees per training step (for DLB
            this counts both views).
    """

    def __init__(self, images_per_step: int):
        super().__init__()
        self.images_per_step = images_per_step
        self._start = 0.0
        self._iterations = 0

    def _optimizer_iterations(self) -> int:
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._iterations = self._optimizer_iterations()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        steps = self._optimizer_iterations() - self._iterations
        if logs is not None:
            logs["epoch_seconds"] = seconds
            logs["images_per_second"] = steps * self.images_per_step / max(seconds, 1e-9)
        logging.info("epoch %d: %.1f s", epoch + 1, seconds)


class Backup(keras.callbacks.Callback):
    """Backs up the training state with its position in the data, for exact resume.

    At each epoch end; `StepBackup` also every N steps (mid-epoch).

    Keras 3.15's `BackupAndRestore` records the batch of a mid-epoch backup but
    restores only the epoch, so a resumed run trains the interrupted epoch's
    first batches twice (and, resumed once, records later mid-epoch backups
    under epoch 0). This callback saves the weights (`model.save_weights`:
    with the optimizer and the self-distillation state) at each epoch end
    (`StepBackup`: also every N steps), with the position `{"epoch", "batches_done"}`;
    `position(directory)` reads it back so that the caller feeds exactly the
    batches not yet trained on (`experiment.run`). The position also carries
    the training time up to that backup, summed over the attempts that led to
    it (`training_seconds(directory)`), so that a resumed run reports the time
    its whole training took, not only its last attempt's. A new weights file is
    written first, then the position naming it, then the old file goes: a
    kill at any point leaves a consistent pair. The directory is kept when
    `fit` ends (`run` removes it once the trained model is saved).

    Args:
        directory: the backup directory (created on first save).
        start: the position this `fit` call starts from (`position(directory)`).
        restore_from: the backup directory to resume from (default:
            `directory`); a multi-worker run's other workers write their own
            backups into scratch but resume from the chief's.
    """

    POSITION = "position.json"

    def __init__(self, directory: str, start: tuple[int, int] = (0, 0),
                 restore_from: str | None = None):
        super().__init__()
        self.directory = directory
        self.restore_from = restore_from or directory
        self.start = tuple(start)
        self._epoch, self._done, self._since_save = start[0], start[1], 0

    @classmethod
    def _state(cls, directory: str) -> dict | None:
        path = os.path.join(directory, cls.POSITION)
        return files.read_json(path) if os.path.exists(path) else None

    @classmethod
    def position(cls, directory: str) -> tuple[int, int]:
        """`(epoch, batches of it already trained)` of the last backup, or (0, 0)."""
        state = cls._state(directory)
        return (int(state["epoch"]), int(state["batches_done"])) if state else (0, 0)

    @classmethod
    def training_seconds(cls, directory: str) -> float:
        """Training time up to the last backup, over every attempt (0.0 without one)."""
        return cls._seconds(cls._state(directory))

    @staticmethod
    def _seconds(state: dict | None) -> float:
        return float(state.get("training_seconds", 0.0)) if state else 0.0

    def on_train_begin(self, logs=None):
        self._began = time.perf_counter()
        state = self._state(self.restore_from)
        self._earlier = self._seconds(state)
        if state is None:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(os.path.join(self.restore_from, state["weights"]))
        logging.info("resumed from %s: epoch %d, %d of its batches done",
                     state["weights"], state["epoch"], state["batches_done"])

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._done = self.start[1] if epoch == self.start[0] else 0

    def on_epoch_end(self, epoch, logs=None):
        self._save(epoch + 1, 0)

    def _save(self, epoch: int, batches_done: int) -> None:
        self._since_save = 0
        os.makedirs(self.directory, exist_ok=True)
        old = self._state(self.directory)
        name = f"epoch{epoch}-batch{batches_done}.weights.h5"
        self.model.save_weights(os.path.join(self.directory, name), overwrite=True)
        seconds = self._earlier + time.perf_counter() - self._began
        files.write_json(os.path.join(self.directory, self.POSITION),
                         {"epoch": epoch, "batches_done": batches_done, "weights": name,
                          "training_seconds": seconds})
        if old and old["weights"] != name:
            files.remove(os.path.join(self.directory, old["weights"]))


class StepBackup(Backup):
    """`Backup` that also backs up every `every_steps` training steps (mid-epoch).

    Its per-step hook makes Keras wait for the device at every step (see the
    note above `EpochTimer`): the price of a backup position inside an epoch.
    """

    def __init__(self, directory: str, every_steps: int,
                 start: tuple[int, int] = (0, 0), restore_from: str | None = None):
        if not isinstance(every_steps, int) or every_steps < 1:
            raise ValueError(f"StepBackup needs every_steps >= 1, got {every_steps!r}; "
                             "Backup backs up at epoch ends only")
        super().__init__(directory, start, restore_from)
        self.every_steps = every_steps

    def on_train_batch_end(self, batch, logs=None):
        self._done += 1
        self._since_save += 1
        # The epoch's last batch is backed up by `on_epoch_end`, next: a backup here would
        # be written for nothing, and a kill between the two would resume on no batches.
        if self._since_save >= self.every_steps and batch + 1 != self.params.get("steps"):
            self._save(self._epoch, self._done)


def progress_verbosity(verbose: int | str) -> int:
    """Keras `verbose` for `fit`: "auto" is a progress bar (1) on a terminal,
    else one line per epoch (2), so a log file is not filled with bar updates."""
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 'auto', 0, 1 or 2, got {verbose!r}")
    return int(verbose)


def standard_callbacks(workdir: str, images_per_step: int,
                       backup_every_steps: int | None = None,
                       start: tuple[int, int] = (0, 0),
                       restore_from: str | None = None) -> list:
    """The callbacks of a run: resume, CSV log, TensorBoard and timing.

    Keras' TensorBoard callback writes with `tf.summary`: without TensorFlow
    (the JAX environment) it is left out with one notice; `train_log.csv`
    holds the same per-epoch values.

    Args:
        workdir: the experiment workdir (see `workdir.py` for its layout).
        images_per_step: images per training step, for throughput logging.
        backup_every_steps: also back up every N steps (mid-epoch resume);
            None backs up at the end of each epoch only.
        start: `(epoch, batches done)` this fit call resumes from.
        restore_from: the backup directory to resume from (default: the
            workdir's; see `Backup`).
    """
    callbacks = [
        # EpochTimer first so its values reach the CSV and TensorBoard logs.
        EpochTimer(images_per_step),
        # Kept when fit ends: `run` deletes it once the trained model is saved,
        # so a kill in between resumes after the last epoch instead of at 0.
        StepBackup(os.path.join(workdir, files.BACKUP), backup_every_steps, start,
                   restore_from) if backup_every_steps else
        Backup(os.path.join(workdir, files.BACKUP), start, restore_from),
        keras.callbacks.CSVLogger(os.path.join(workdir, files.TRAIN_LOG), append=True),
    ]
    if backends.has_tensorflow():
        callbacks.append(keras.callbacks.TensorBoard(
            os.path.join(workdir, files.TENSORBOARD), write_graph=False, profile_batch=0))
    else:
        logging.warning("TensorBoard logs need TensorFlow, which is not installed: none "
                        "written (%s has the same per-epoch values)", files.TRAIN_LOG)
    return callbacks
