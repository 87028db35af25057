"""A study cell cut to seconds runs end to end and packs into small files (TensorFlow;
a minute on 2 cores, three under JAX on CPU, so not in the JAX suite)."""

import os

import pytest

from epsd_tf.study import archive, plan
from epsd_tf.train import config

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
# The study's config with the data, steps, Mean-JSV and EPSD's unroll shrunk (one inner
# step keeps the full second-order float64 meta-gradient; three took 60 % of the test).
TINY = ["load.max_train_examples = 256", "load.batch_size = 32", "run.epochs = 1",
        "run.steps_per_epoch = 2", "run.mean_jsv_examples = 2", "run.verbose = 0",
        "prune_at_init.inner_steps = 1"]


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST), reason="Fashion-MNIST IDX files missing")
def test_a_tiny_study_cell_runs_and_packs_small(tmp_path):
    workdir = str(tmp_path / "r20" / "cells" / "epsd-dlb-s0.98-seed0")
    text = config.parse(plan.R20.gin_files, [*TINY, "prune_at_init.sparsity = 0.98"])
    metrics = config.run_from_config(workdir, text)
    assert metrics["pruning"]["scorer"] == "epsd"
    assert abs(metrics["pruning"]["prunable_sparsity"] - 0.98) < 1e-3
    assert set(metrics["mean_jsv"]) == {"init", "trained"}
    # The cell's committed form: small files only, the floor readable from the summary.
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "cell.json"), "w") as f:
        f.write('{"name": "epsd-dlb-s0.98-seed0", "scorer": "epsd", "method": "dlb", '
                '"sparsity": 0.98, "seed": 0}')
    content = archive.small_files(workdir)
    assert "pruning_summary.json" in content and "model.keras" not in content
    assert sum(len(v) for v in content.values()) < 64 * 1024
