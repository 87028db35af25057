"""The experiment work directory: what is in it and how it is written safely.

Layout of a workdir (every file is written atomically: temp file + rename, so
a crash never leaves a half-written file that breaks the next run):

  config.gin              the full gin config the run was started with
  operative_config.gin    the gin parameters the run actually used
  pruned_init.keras       the masked network at initialisation (m ⊙ θ_init),
                          reused on resume so scoring never runs twice
  pruning_report.json     per-layer sparsity report of the pruning stage
  backup/                 BackupAndRestore state (deleted when training ends)
  train_log.csv           one row per epoch
  tensorboard/            TensorBoard event files
  model.keras             the trained model (masks kept, so it can train on)
  metrics.json            final metrics; its presence marks a finished run
  landscape/              loss landscape JSON and plots (landscape stage)
  export/                 edge artifacts and their report (export stage)
  pqat/                   TF-MOT pruning-preserving QAT int8 file and report
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from epsd_tf.export import files

CONFIG = "config.gin"
OPERATIVE_CONFIG = "operative_config.gin"
PRUNED_INIT = "pruned_init.keras"
PRUNING_REPORT = "pruning_report.json"
BACKUP = "backup"
TRAIN_LOG = "train_log.csv"
TENSORBOARD = "tensorboard"
MODEL = "model.keras"
METRICS = "metrics.json"
LANDSCAPE = "landscape"
EXPORT = "export"
PQAT = "pqat"


def atomic_write_text(path: str, text: str) -> None:
    """Writes `text` to `path` via a temp file in the same directory + rename."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    files.write_text(path, text, overwrite=True)


def atomic_write_json(path: str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_save_model(model, path: str) -> None:
    """Saves a Keras model to `path` (`.keras`) without leaving a partial file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with files.atomic_path(path, overwrite=True, suffix=".keras") as temporary:
        model.save(temporary)


def read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def _json_default(value):
    # numpy scalars and arrays appear in metrics and reports.
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serialisable")


def has_progress(workdir: str) -> bool:
    """True when the workdir holds results or checkpoints of a run."""
    return any(os.path.exists(os.path.join(workdir, name))
               for name in (PRUNED_INIT, BACKUP, MODEL, METRICS))


def prepare(workdir: str, config_text: str, overwrite: bool = False) -> bool:
    """Checks that `workdir` can hold this run; returns True if it is finished.

    A workdir holds exactly one experiment. Starting again in a workdir with
    the same config resumes (or reports the finished run); a different config
    is refused, so two experiments never mix their checkpoints.

    Args:
        workdir: the directory (created if missing).
        config_text: the full gin config of this run.
        overwrite: delete whatever the workdir holds and start afresh.

    Returns:
        True when the workdir already holds a finished run of this config.

    Raises:
        ValueError: the workdir holds a different experiment, or is a file.
    """
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ValueError(f"workdir {workdir!r} exists and is not a directory")
    if overwrite and os.path.isdir(workdir):
        shutil.rmtree(workdir)
    os.makedirs(workdir, exist_ok=True)
    config_path = os.path.join(workdir, CONFIG)
    if os.path.exists(config_path) and has_progress(workdir):
        with open(config_path) as f:
            previous = f.read()
        if previous != config_text:
            raise ValueError(
                f"workdir {workdir!r} holds an experiment with a different config "
                f"(see {config_path}). Use a new --workdir, or pass --overwrite to "
                "delete it and start again.")
    else:
        # Nothing to resume (a fresh workdir, or one whose run failed before
        # its first checkpoint): this run's config takes its place.
        atomic_write_text(config_path, config_text)
    return os.path.exists(os.path.join(workdir, METRICS))
