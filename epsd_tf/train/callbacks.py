"""Callbacks every experiment run attaches (logging, resume, timing)."""

from __future__ import annotations

import os
import sys
import time

import keras
from absl import logging

from epsd_tf import files


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_seconds` and `images_per_second` to each epoch's logs.

    Args:
        images_per_step: images the network sees per training step (for DLB
            this counts both views).
    """

    def __init__(self, images_per_step: int):
        super().__init__()
        self.images_per_step = images_per_step
        self._start = 0.0
        self._steps = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        if logs is not None:
            logs["epoch_seconds"] = seconds
            logs["images_per_second"] = self._steps * self.images_per_step / max(seconds, 1e-9)
        logging.info("epoch %d: %.1f s", epoch + 1, seconds)


def progress_verbosity(verbose: int | str) -> int:
    """Keras `verbose` for `fit`: "auto" is a progress bar (1) on a terminal,
    else one line per epoch (2), so a log file is not filled with bar updates."""
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 'auto', 0, 1 or 2, got {verbose!r}")
    return int(verbose)


def standard_callbacks(workdir: str, images_per_step: int,
                       backup_every_steps: int | None = None) -> list:
    """The callbacks of a run: resume, CSV log, TensorBoard and timing.

    Args:
        workdir: the experiment workdir (see `workdir.py` for its layout).
        images_per_step: images per training step, for throughput logging.
        backup_every_steps: also back up every N steps (mid-epoch resume);
            None backs up at the end of each epoch only.
    """
    save_freq = "epoch" if not backup_every_steps else int(backup_every_steps)
    return [
        # EpochTimer first so its values reach the CSV and TensorBoard logs.
        EpochTimer(images_per_step),
        # Kept when fit ends: `run` deletes it once the trained model is saved,
        # so a kill in between resumes after the last epoch instead of at 0.
        keras.callbacks.BackupAndRestore(
            os.path.join(workdir, files.BACKUP), save_freq=save_freq,
            delete_checkpoint=False),
        keras.callbacks.CSVLogger(os.path.join(workdir, files.TRAIN_LOG), append=True),
        keras.callbacks.TensorBoard(os.path.join(workdir, files.TENSORBOARD),
                                    write_graph=False, profile_batch=0),
    ]
