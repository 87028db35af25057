"""The optimizer recipes of the self-distillation papers (METHOD.md §4).

This table is the only place the recipes are written down: gin files use them
with `run.make_optimizer = @make_recipe_optimizer` and
`make_recipe_optimizer.name = 'dlb'` (see gin/cifar10_resnet20_epsd_dlb.gin),
Python users call `make_recipe_optimizer("dlb", steps_per_epoch=..., epochs=...)`.
Milestones are stated for the recipe's own `epochs` and scale to the run's.
A recipe's batch size (DLB 64, CS-KD and PS-KD 128) is a data setting
(`data.load(batch_size=...)`, `load.batch_size` in gin), not an optimizer one.
"""

from __future__ import annotations

import keras

from epsd_tf.optim.factory import make_optimizer
from epsd_tf.optim.schedules import scale_milestones

# `make_optimizer` settings; milestones are epochs out of `epochs`.
RECIPES = {
    "dlb": {  # Shen et al., CVPR 2022 (official code); batch size 64.
        "learning_rate": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
        "epochs": 240, "schedule": "multistep", "milestones": (150, 180, 210), "gamma": 0.1,
    },
    "cskd": {  # Yun et al., CVPR 2020; batch size 128.
        "learning_rate": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 1e-4,
        "epochs": 200, "schedule": "multistep", "milestones": (100, 150), "gamma": 0.1,
    },
    "pskd": {  # Kim et al., ICCV 2021; batch size 128.
        "learning_rate": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
        "epochs": 300, "schedule": "multistep", "milestones": (150, 225), "gamma": 0.1,
    },
}


def recipe(name: str, epochs: int | None = None) -> dict:
    """A copy of `RECIPES[name]`, milestones scaled to `epochs` if given.

    Raises:
        ValueError: unknown recipe name.
    """
    if name not in RECIPES:
        raise ValueError(f"Unknown recipe {name!r}; valid: {sorted(RECIPES)}")
    settings = dict(RECIPES[name])
    if epochs is not None:
        settings["milestones"] = scale_milestones(settings["milestones"],
                                                  settings["epochs"], epochs)
        settings["epochs"] = int(epochs)
    return settings


def make_recipe_optimizer(name: str, *, steps_per_epoch: int, epochs: int | None = None,
                          **overrides) -> keras.optimizers.Optimizer:
    """The optimizer of recipe `name` (METHOD.md §4) for a run of `epochs`.

    Args:
        name: "dlb", "cskd" or "pskd".
        steps_per_epoch: optimizer steps per epoch.
        epochs: run length; milestones are scaled to it (default: the recipe's).
        **overrides: any `make_optimizer` argument, applied after scaling.

    Raises:
        ValueError: unknown recipe or override name (checked before building).
    """
    settings = recipe(name, epochs)
    unknown = set(overrides) - set(make_optimizer.__kwdefaults__)
    if unknown:
        raise ValueError(f"Unknown optimizer settings {sorted(unknown)}; valid: "
                         f"{sorted(make_optimizer.__kwdefaults__)}")
    settings.update(overrides)
    return make_optimizer(steps_per_epoch=steps_per_epoch, **settings)
