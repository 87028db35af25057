"""Finished sweep cells with known numbers, written without training (tests/study)."""

from __future__ import annotations

import json
import os

from epsd_tf.pruning import scorers
from epsd_tf.study import plan
from epsd_tf.sweep import grid

# Two cells most tests use: EPSD at 98 % and dense, both DLB, seed 0.
EPSD_98 = grid.Cell("epsd", "dlb", 0.98, 0)
DENSE_0 = grid.Cell("dense", "dlb", 0.0, 0)
LAYERS = (("stem_conv/kernel", 144), ("stage1_conv/kernel", 2304), ("stage3_conv/kernel", 36864),
          ("logits/kernel", 640))


def config_text(fam: plan.Family, cell: grid.Cell, arch: str = "resnet20", epochs: int = 30,
                extra: dict | None = None) -> str:
    """A `config.gin` in gin's `config_str` layout for the cell."""
    values = {"build.name": f"'{arch}'", "load.dataset": "'fashion_mnist'",
              "load.max_train_examples": "None", "load.seed": str(cell.seed),
              "run.epochs": str(epochs), "run.seed": str(cell.seed),
              "run.method": f"@{cell.method.upper() if cell.method != 'none' else 'NoDist'}()",
              "prune_at_init.sparsity": repr(cell.sparsity if cell.scorer != grid.DENSE else 0.9),
              "prune_at_init.scorer": f"'{cell.scorer if cell.scorer != grid.DENSE else 'epsd'}'",
              "run.prune": "None" if cell.scorer == grid.DENSE else "@prune_at_init",
              "run.landscape": ("@loss_landscape" if "gin/study_landscape.gin" in fam.gin_files
                                else "None")}
    for binding in fam.bindings:
        key, value = (part.strip() for part in binding.split("=", 1))
        values[key] = value
    values.update(extra or {})
    lines = []
    for key in sorted(values):
        lines += [f"# Parameters for {key.split('.')[0]}:", "# " + "=" * 20,
                  f"{key} = {values[key]}", ""]
    return "\n".join(lines)


def write_cell(root: str, fam: plan.Family, cell: grid.Cell, *, accuracy: float,
               jsv_init: float = 1.0, jsv_trained: float = 2.0, floor: int = 0,
               pruning_seconds: float = 10.0, training_seconds: float = 100.0,
               arch: str = "resnet20", epochs: int = 30, config_extra: dict | None = None,
               sweep_bindings: list[str] | None = None, landscape: dict | None = None,
               big_files: bool = True) -> str:
    """Writes `<root>/<family>/cells/<cell>` as a finished sweep cell; returns its directory.

    `floor` pruned layers keep exactly the 0.2 % floor; `sweep_bindings`
    overrides what the sweep entry says the cell ran with.
    """
    directory = os.path.join(root, fam.name, grid.CELLS, cell.name)
    os.makedirs(directory, exist_ok=True)

    def dump(name, value):
        path = os.path.join(directory, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(value, f)

    dump("cell.json", cell.description())
    pruned = cell.scorer != grid.DENSE
    metrics = {
        "test": {"accuracy": accuracy, "loss": 0.3, "ece": 0.02},
        "method": cell.method, "epochs": epochs,
        "parameters": {"sparsity_trainable": cell.sparsity},
        "mean_jsv": {"init": {"mean": jsv_init}, "trained": {"mean": jsv_trained}},
        "seconds": {"pruning": pruning_seconds if pruned else 0.0,
                    "training": training_seconds,
                    "total": training_seconds + (pruning_seconds if pruned else 0.0) + 5},
        "cost": {"scoring_pass_equivalents": 14.0 if pruned else 0.0,
                 "training_passes": 12600, "scoring_fraction": 0.001,
                 "ptd_over_epsd": 20.0, "epsd_epoch_equivalents": 60.1,
                 "ptd_epoch_equivalents": 1310.0},
        "pruning": ({"scorer": cell.scorer, "target_sparsity": cell.sparsity,
                     "prunable_sparsity": cell.sparsity} if pruned else None),
    }
    if landscape is not None:
        metrics["landscape"] = {"sharpness_half": landscape["sharpness"]}
        dump(os.path.join("landscape", "landscape.json"),
             {"alphas": landscape["alphas"], "loss": landscape["loss"],
              "accuracy": [0.9] * len(landscape["alphas"])})
    dump("metrics.json", metrics)
    dump("stages.json", {"trained": metrics})
    with open(os.path.join(directory, "config.gin"), "w") as f:
        f.write(config_text(fam, cell, arch, epochs, config_extra))
    with open(os.path.join(directory, "operative_config.gin"), "w") as f:
        f.write(config_text(fam, cell, arch, epochs, config_extra))
    with open(os.path.join(directory, "train_log.csv"), "w") as f:
        f.write("epoch,accuracy\n" + "".join(f"{e},0.9\n" for e in range(epochs)))
    config = plan.expected_config(fam, cell)
    if sweep_bindings is not None:
        config["gin_bindings"] = sweep_bindings
    dump("cell_state.json", {"status": "done", "attempts": 1, "elapsed": 123.0,
                             "config": config})
    if pruned:
        layers = []
        for index, (name, parameters) in enumerate(LAYERS):
            kept = 1 if index < floor else parameters // 10
            layers.append({"name": name, "layer": name.split("/")[0], "masked": True,
                           "parameters": parameters, "kept": kept, "shape": [parameters],
                           "sparsity": 1 - kept / parameters,
                           "score": {"mean": 0.1, "min": 0.0, "max": 1.0, "std": 0.1},
                           "score_histogram": {"counts": [1] * 30, "edges": [0.0] * 31}})
        dump("pruning_report.json", {"layers": layers, "target_sparsity": cell.sparsity,
                                     "settings": {"min_density": 0.002, "scope": "global",
                                                  "scorer": cell.scorer,
                                                  "rounds": _rounds(fam, cell)},
                                     "totals": {"prunable_kept": 1}})
    if big_files:  # what a real cell also holds, and the study never commits
        with open(os.path.join(directory, "model.keras"), "wb") as f:
            f.write(os.urandom(300_000))
        os.makedirs(os.path.join(directory, "tensorboard", "train"), exist_ok=True)
        with open(os.path.join(directory, "tensorboard", "train", "events.out"), "wb") as f:
            f.write(b"events")
        with open(os.path.join(directory, "run.log"), "w") as f:
            f.write("log\n")
    return directory


def _rounds(fam: plan.Family, cell: grid.Cell) -> int:
    """The rounds a real cell prunes in: its family's binding, else the scorer's default."""
    for binding in fam.bindings:
        if binding.startswith("prune_at_init.rounds"):
            return int(binding.split("=")[1])
    return scorers.DEFAULT_ROUNDS.get(cell.scorer, 1)


def tree(directory: str) -> list[str]:
    """Every file under `directory`, as sorted relative paths."""
    return sorted(os.path.relpath(os.path.join(d, n), directory)
                  for d, _, names in os.walk(directory) for n in names)
