"""Issue 16's checks on finished `tools/run.py` workdirs: masks, accuracy, resume.

Imports neither JAX nor TensorFlow (the driver, `data_parallel.py`, must not
hold a device while its runs train): a `.keras` file is a zip whose
`model.weights.h5` is read with h5py, which Keras itself needs.

* `compare_masks`: the pruning masks of two runs' `pruned_init.keras` (EPSD
  step 1, scored once outside the distribution) must be bit-identical.
* `compare_accuracy`: the data-parallel run's test accuracy against the
  one-device run with the same seed, judged against the seed-to-seed spread
  of one-device runs (`NOISE_FLOOR` below).
* `check_resume`: a run killed mid-epoch and re-run resumed from its backup
  (not from scratch) and finished.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import statistics
import zipfile

import h5py
import numpy as np

PRUNED_INIT = "pruned_init.keras"
WEIGHTS = "model.weights.h5"
# Accuracy "equal within noise": |data_parallel - one device, same seed| must not
# exceed the larger of twice the largest seed-to-seed difference of the
# one-device runs, and this floor (percentage points). With only two or three
# seeds, a small observed spread would make a tighter bound fail by chance; the
# floor is about twice the binomial standard error of a 10 000-image test
# accuracy near 92 % (0.27 pt), the scale of seed-to-seed differences of a short
# ResNet-20 Fashion-MNIST run.
NOISE_FLOOR = 0.5
_RESUMED = re.compile(r"resumed from (\S+): epoch (\d+), (\d+) of its batches done")
_REUSED_MASK = "resuming: loading the pruned initial network"


def _weights_file(path: str) -> h5py.File:
    if not os.path.exists(path):
        raise FileNotFoundError(f"no saved network at {path}")
    with zipfile.ZipFile(path) as archive:
        return h5py.File(io.BytesIO(archive.read(WEIGHTS)), "r")


def masks(path: str) -> dict:
    """`{h5 path: mask array}` of every pruning wrapper in a `.keras` file.

    A wrapper (`PruneLowMagnitude`) is a layer group with a `layer` sub-group
    (the wrapped layer); its own variables (`vars/*`) are its masks.
    """
    found = {}
    with _weights_file(path) as weights:
        def visit(name, node):
            if isinstance(node, h5py.Group) and "layer" in node and "vars" in node:
                for key, array in node["vars"].items():
                    found[f"{name}/vars/{key}"] = np.asarray(array)
        weights.visititems(visit)
    return found


def _all_weights(path: str) -> dict:
    found = {}
    with _weights_file(path) as weights:
        weights.visititems(lambda name, node: found.__setitem__(name, np.asarray(node))
                           if isinstance(node, h5py.Dataset) else None)
    return found


def compare_masks(path_a: str, path_b: str) -> dict:
    """Whether two `.keras` files hold bit-identical masks (and initial weights).

    Returns:
        `{"identical": bool, "masks": count, "kept": kept weights of a,
        "differing": [mask paths that differ or exist in one file only],
        "differing_entries": mask entries that differ (a few: round-off at the
        score threshold; many: another mask), "all_weights_identical": bool}`.
    """
    a, b = masks(path_a), masks(path_b)
    differing = sorted(set(a) ^ set(b))
    differing += [k for k in sorted(set(a) & set(b))
                  if a[k].shape != b[k].shape or a[k].tobytes() != b[k].tobytes()]
    flipped = sum(int((a[k] != b[k]).sum()) for k in set(a) & set(b)
                  if a[k].shape == b[k].shape)
    weights_a, weights_b = _all_weights(path_a), _all_weights(path_b)
    same_weights = set(weights_a) == set(weights_b) and all(
        weights_a[k].tobytes() == weights_b[k].tobytes() for k in weights_a)
    return {"identical": bool(a) and not differing, "masks": len(a),
            "kept": int(sum(int(m.sum()) for m in a.values())), "differing": differing,
            "differing_entries": flipped,
            "all_weights_identical": same_weights}


def accuracy_of(workdir: str) -> float:
    """Test accuracy (%) of a finished run (`metrics.json`)."""
    with open(os.path.join(workdir, "metrics.json")) as f:
        return 100.0 * float(json.load(f)["test"]["accuracy"])


def compare_accuracy(data_parallel: float, one_device: list) -> dict:
    """Judges the data-parallel accuracy against one-device runs (in %).

    Args:
        data_parallel: test accuracy of the data-parallel run (seed of `one_device[0]`).
        one_device: test accuracies of one-device runs; the first has the same
            seed as the data-parallel run, the others other seeds.

    Returns:
        The difference, the seed spread, the bound and whether it holds.
    """
    if not one_device:
        raise ValueError("compare_accuracy needs at least the same-seed one-device run")
    spread = max(one_device) - min(one_device) if len(one_device) > 1 else None
    bound = max(2.0 * (spread or 0.0), NOISE_FLOOR)
    difference = data_parallel - one_device[0]
    return {"data_parallel": data_parallel, "one_device": list(one_device),
            "difference": difference, "seed_spread": spread, "bound": bound,
            "within_noise": abs(difference) <= bound}


def train_log(workdir: str) -> list:
    """Rows of `train_log.csv` (dicts of floats), [] when absent."""
    path = os.path.join(workdir, "train_log.csv")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)}
                for row in csv.DictReader(f)]


def epoch_images_per_second(workdir: str) -> float | None:
    """Median `images_per_second` of a run's epochs after the first (compilation)."""
    rates = [row["images_per_second"] for row in train_log(workdir)[1:]
             if "images_per_second" in row]
    return statistics.median(rates) if rates else None


def check_resume(workdir: str, killed_at: dict | None, relaunch_log: str,
                 epochs: int) -> dict:
    """Whether a run killed at `killed_at` resumed there and finished.

    Args:
        workdir: the run's workdir.
        killed_at: the backup position when it was killed (`backup/position.json`
            read after the kill: `{"epoch", "batches_done", "weights"}`), or
            None when no kill happened.
        relaunch_log: the re-run's log (stderr), where `callbacks.Backup` logs
            "resumed from <weights>: epoch e, b of its batches done".
        epochs: the run's epochs.

    Returns:
        `{"passed": bool, "problems": [...], "resumed_from": ..., "killed_at": ...}`.
    """
    problems = []
    found = _RESUMED.search(relaunch_log)
    resumed = None
    if killed_at is None:
        problems.append("the run was never killed (it ended before a mid-epoch backup was seen)")
    elif killed_at.get("batches_done", 0) == 0:
        problems.append(f"killed at an epoch boundary ({killed_at}), not mid-epoch")
    if found is None:
        problems.append("the re-run did not resume from a backup (no 'resumed from' line): "
                        "it trained from scratch")
    else:
        resumed = {"weights": found.group(1), "epoch": int(found.group(2)),
                   "batches_done": int(found.group(3))}
        if killed_at is not None and resumed != {k: killed_at.get(k) for k in resumed}:
            problems.append(f"resumed from {resumed}, but the backup at the kill was "
                            f"{killed_at}")
    if _REUSED_MASK not in relaunch_log:
        problems.append("the re-run did not reload the pruned network (it scored again)")
    if not os.path.exists(os.path.join(workdir, "metrics.json")):
        problems.append("no metrics.json: the re-run did not finish")
    logged = [int(row["epoch"]) for row in train_log(workdir)]
    if logged != list(range(epochs)):
        problems.append(f"train_log.csv epochs {logged}, expected 0 .. {epochs - 1} once each")
    return {"passed": not problems, "problems": problems, "killed_at": killed_at,
            "resumed_from": resumed}
