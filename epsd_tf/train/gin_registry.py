"""Registers the swappable pieces with gin, under their own names.

Gin files refer to them as `@load`, `@build`, `@make_optimizer`,
`@make_recipe_optimizer`, `@prune_at_init`, `@DLB()`, `@CSKD()`, `@PSKD()`,
`@NoDistillation()`, `@export_all`, `@run_pqat`, `@loss_landscape` (or with
their module prefix, e.g. `@epsd_tf.data.load`).
`run` itself is configured in `experiment.py`. Nothing is renamed: the gin
name is the Python name, so the API docs are the config docs.
"""

from __future__ import annotations

import gin
import keras

from epsd_tf import analysis, data, models, optim, pruning
from epsd_tf.distill import methods
from epsd_tf.train import tf_only

_REGISTERED = []


def _register(obj, module: str):
    gin.register(obj, module=module)
    _REGISTERED.append(f"{module}.{obj.__name__}")


_register(data.load, "epsd_tf.data")
_register(models.build, "epsd_tf.models")
_register(optim.make_optimizer, "epsd_tf.optim")
_register(optim.make_recipe_optimizer, "epsd_tf.optim")
_register(pruning.prune_at_init, "epsd_tf.pruning")
if keras.backend.backend() == "tensorflow":
    from epsd_tf import export

    _register(export.export_all, "epsd_tf.export")
    _register(export.run_pqat, "epsd_tf.export")
else:  # Same names, so configs parse; using them fails before any work.
    _register(tf_only.stand_in("export_all"), "epsd_tf.export")
    _register(tf_only.stand_in("run_pqat"), "epsd_tf.export")
_register(analysis.loss_landscape, "epsd_tf.analysis")
for _method in (methods.NoDistillation, methods.DLB, methods.CSKD, methods.PSKD):
    _register(_method, "epsd_tf.distill")


def names() -> list[str]:
    """Every configurable name a gin file may use."""
    return _REGISTERED + ["epsd_tf.train.experiment.run"]
