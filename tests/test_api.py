"""The top-level Python API, as the package docstring and README show it."""

import ast
import glob
import os

import numpy as np

import epsd_tf


def test_the_documented_two_step_flow(tmp_path):
    splits = epsd_tf.data.load("synthetic", source="synthetic", batch_size=32, seed=0)
    model = epsd_tf.models.build("small_cnn", splits.info.image_shape,
                                 splits.info.num_classes)
    method = epsd_tf.DLB()
    batches = epsd_tf.data.for_method(splits, method)
    pruned, report = epsd_tf.prune_at_init(model, batches, sparsity=0.9, scorer="epsd",
                                           method=method, inner_steps=1)
    assert abs(report["totals"]["prunable_sparsity"] - 0.9) < 1e-3
    trainer = epsd_tf.SelfDistillationModel(pruned, method, batch_size=32)
    trainer.compile(optimizer=epsd_tf.optim.make_optimizer(
        learning_rate=0.01, steps_per_epoch=len(batches), epochs=2))
    history = trainer.fit(batches, epochs=2, validation_data=splits.validation, verbose=0)
    assert history.history["val_accuracy"][-1] > 0.5
    # Pruned weights are still exactly zero after training.
    for name, mask in epsd_tf.get_masks(pruned).items():
        weight = epsd_tf.get_prunable_weights(pruned)[name].numpy()
        assert np.all(weight[mask == 0] == 0), name
    stripped = epsd_tf.strip_masks(pruned)
    assert not epsd_tf.has_masks(stripped)
    report = epsd_tf.export.export_all(
        pruned, str(tmp_path / "export"), formats=("keras", "float32_sparse"),
        eval_batch=next(iter(splits.test)), latency_runs=0)
    assert (tmp_path / "export").is_dir()
    assert report


def test_the_library_packages_never_import_the_gin_root():
    # The Python API above must work without `epsd_tf.train` (the gin root)
    # and without gin (DESIGN.md, "Dependencies point one way").
    root = os.path.dirname(epsd_tf.__file__)
    offenders = []
    for path in glob.glob(os.path.join(root, "*", "**", "*.py"), recursive=True):
        if os.path.relpath(path, root).split(os.sep)[0] in ("train", "cli"):
            continue  # the gin root, and the console commands on top of it
        for node in ast.walk(ast.parse(open(path).read(), filename=path)):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom) else
                     [alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [])
            offenders += [f"{path}: {name}" for name in names
                          if name.startswith("epsd_tf.train") or name.split(".")[0] == "gin"]
    assert not offenders


def test_the_documented_python_api_does_not_use_the_gin_root():
    readme = open(os.path.join(os.path.dirname(os.path.dirname(epsd_tf.__file__)),
                               "README.md")).read()
    python_blocks = readme.split("```python")[1:]
    assert python_blocks
    for text in [block.split("```")[0] for block in python_blocks] + [epsd_tf.__doc__]:
        assert "epsd_tf.train" not in text and "import optimizers" not in text
