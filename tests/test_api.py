"""The top-level Python API, as the package docstring and README show it."""

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
