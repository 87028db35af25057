"""epsd_tf: EPSD (Early Pruning with Self-Distillation, Chen et al., AAAI 2024) for Keras 3.

The two steps of EPSD, for any built Keras 3 model:

    import epsd_tf

    splits = epsd_tf.data.load("fashion_mnist")
    model = epsd_tf.models.build("resnet20", splits.info.image_shape, splits.info.num_classes)
    method = epsd_tf.DLB()
    batches = epsd_tf.data.for_method(splits, method)
    pruned, report = epsd_tf.prune_at_init(model, splits, sparsity=0.9,
                                           scorer="epsd", method=method)
    trainer = epsd_tf.SelfDistillationModel(pruned, method, batch_size=128)
    trainer.compile(optimizer=epsd_tf.optim.make_optimizer(
        learning_rate=0.1, steps_per_epoch=len(batches), epochs=2))
    trainer.fit(batches, epochs=2, validation_data=splits.validation)
    epsd_tf.export.export_all(pruned, "export/", representative_data=splits.train,
                              eval_batch=splits.test)

Saved models load after a plain `import epsd_tf`:

    import epsd_tf, keras
    model = keras.models.load_model("runs/quickstart/model.keras")

because importing the package registers its Keras serializables (the
`PruneLowMagnitude` wrapper, the SD methods, the ECE
metric, the optimizer and schedules); that imports Keras (and so its backend)
and the modules defining them, nothing else. The packages `models`, `data`,
`pruning`, `distill`, `optim`, `analysis`, `export` (the Python API), `train`
(the gin-configured experiment runner) and the names below are imported on
first use.
"""

import importlib

from epsd_tf import backends as _backends

# A backend that is not installed fails here, naming what to install, before
# anything imports Keras (which would fail deep inside its own import).
_backends.check_installed()

__version__ = "0.1.0"

_PACKAGES = ("analysis", "data", "distill", "export", "models", "optim", "pruning", "train")
_NAMES = {
    "CSKD": "distill", "DLB": "distill", "PSKD": "distill", "NoDistillation": "distill",
    "SelfDistillationModel": "distill",
    "PruneLowMagnitude": "pruning", "get_masks": "pruning", "get_prunable_weights": "pruning",
    "has_masks": "pruning", "prune_at_init": "pruning", "prune_low_magnitude": "pruning",
    "set_masks": "pruning", "strip_masks": "pruning", "strip_pruning": "pruning",
    "export_all": "export",
}
__all__ = sorted(_PACKAGES + tuple(_NAMES))


def __getattr__(name):
    if name in _PACKAGES:
        return importlib.import_module(f"epsd_tf.{name}")
    if name in _NAMES:
        return getattr(importlib.import_module(f"epsd_tf.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'epsd_tf' has no attribute {name!r}")


def __dir__():
    return __all__


# Modules whose import registers Keras serializables (`register_keras_serializable`).
_SERIALIZABLES = ("epsd_tf.pruning.wrapper", "epsd_tf.distill.methods",
                  "epsd_tf.distill.metrics", "epsd_tf.optim.sgd", "epsd_tf.optim.schedules")
for _module in _SERIALIZABLES:
    importlib.import_module(_module)
del _module
