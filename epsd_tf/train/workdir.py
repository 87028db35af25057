"""The experiment work directory: what is in it, who may use it, what is done.

Layout of a workdir (names in `epsd_tf.files`; every file is written
atomically there: temp file + rename, so a crash never leaves a half-written
file that breaks the next run):

  run.lock                held while a run uses the workdir (host, pid)
  config.gin              the full gin config the run was started with
  operative_config.gin    the gin parameters the run actually used
  pruned_init.keras       the masked network at initialisation (m ⊙ θ_init),
                          reused on resume so scoring never runs twice
  pruning_report.json     per-layer sparsity report of the pruning stage
  backup/                 callbacks.Backup: weights + position.json (epoch,
                          batches done; deleted once the trained model is saved)
  train_log.csv           one row per epoch
  tensorboard/            TensorBoard event files
  model.keras             the trained model (masks kept, so it can train on)
  stages.json             the result of every finished stage (Mean-JSV at
                          init, training, landscape, export, PQAT): a re-run
                          resumes at the first unfinished one
  metrics.json            final metrics; its presence marks a finished run
  landscape/              loss landscape JSON and plots (landscape stage)
  export/                 edge artifacts and their report (export stage)
  pqat/                   TF-MOT pruning-preserving QAT int8 file and report
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Callable, Iterator

from absl import logging

from epsd_tf import files

# The names stay importable from here (`workdir.METRICS`, ...); their home is
# epsd_tf.files, which the analysis and sweep code read too.
from epsd_tf.files import (  # noqa: F401
    BACKUP,
    CONFIG,
    EXPORT,
    LANDSCAPE,
    LOCK,
    METRICS,
    MODEL,
    OPERATIVE_CONFIG,
    PQAT,
    PRUNED_INIT,
    PRUNING_REPORT,
    STAGES,
    TENSORBOARD,
    TRAIN_LOG,
    has_progress,
    is_finished,
    read_json,
)

# Kept for callers of the old names; the writers are epsd_tf.files'.
atomic_write_json = files.write_json
atomic_write_text = files.write_text
atomic_save_model = files.save_model


@contextlib.contextmanager
def lock(workdir: str) -> Iterator[dict]:
    """Holds `workdir/run.lock` for the block: one run per workdir at a time.

    Creates the workdir if needed; if it had to create it and the block leaves
    it empty (a run refused on bad input), removes it again.

    Raises:
        ValueError: `workdir` exists and is not a directory.
        epsd_tf.files.LockHeldError: another live run holds the workdir.
    """
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ValueError(f"workdir {workdir!r} exists and is not a directory")
    created = not os.path.exists(workdir)
    os.makedirs(workdir, exist_ok=True)
    try:
        with files.locked(os.path.join(workdir, LOCK), purpose="tools/run.py"):
            yield
    finally:
        if created and not os.listdir(workdir):
            os.rmdir(workdir)


def prepare(workdir: str, config_text: str, overwrite: bool = False) -> bool:
    """Checks that `workdir` can hold this run; returns True if it is finished.

    A workdir holds exactly one experiment. Starting again in a workdir with
    the same config resumes (or reports the finished run); a different config
    is refused, so two experiments never mix their checkpoints. Call it while
    holding `lock(workdir)`.

    Args:
        workdir: the directory (created if missing).
        config_text: the full gin config of this run.
        overwrite: delete whatever the workdir holds (but its lock) and start afresh.

    Returns:
        True when the workdir already holds a finished run of this config.

    Raises:
        ValueError: the workdir holds a different experiment, or is a file.
    """
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ValueError(f"workdir {workdir!r} exists and is not a directory")
    os.makedirs(workdir, exist_ok=True)
    if overwrite:
        for name in os.listdir(workdir):
            if name != LOCK:
                files.remove(os.path.join(workdir, name))
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
        files.write_text(config_path, config_text)
    return is_finished(workdir)


class Stages:
    """The finished stages of a run, in `stages.json`: each stage runs once.

    A stage's result (a JSON-able dict) is recorded as soon as the stage
    finishes, so a run killed or failing in a later stage resumes after it.
    """

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, STAGES)
        self.results: dict = read_json(self.path) if os.path.exists(self.path) else {}

    def __contains__(self, name: str) -> bool:
        return name in self.results

    def get(self, name: str) -> Any:
        return self.results.get(name)

    def record(self, name: str, result: Any) -> Any:
        """Records `name` as finished with `result` (atomically); returns `result`."""
        self.results[name] = result
        files.write_json(self.path, self.results)
        return result

    def run(self, name: str, stage: Callable[[], Any]) -> Any:
        """The recorded result of `name`, or runs `stage()` and records its result."""
        if name in self.results:
            logging.info("resuming: stage %r finished earlier (recorded in %s)", name,
                         self.path)
            return self.results[name]
        start = time.perf_counter()
        result = stage()
        logging.info("stage %r finished in %.1f s", name, time.perf_counter() - start)
        return self.record(name, result)
