"""epsd_tf.optim: the optimizer, schedules and recipes of the SD papers.

`make_optimizer(...)` builds a `TorchSGD` (PyTorch-style SGD, coupled L2 weight
decay) with an `EpochSchedule`; `make_recipe_optimizer("dlb" | "cskd" |
"pskd", ...)` does so with a paper's settings (`RECIPES`, METHOD.md §4).
Plain Keras 3: no gin, no TensorFlow-specific calls.
"""

from epsd_tf.optim.factory import OPTIMIZERS, make_optimizer
from epsd_tf.optim.recipes import RECIPES, make_recipe_optimizer, recipe
from epsd_tf.optim.schedules import SCHEDULES, EpochSchedule, make_schedule, scale_milestones
from epsd_tf.optim.sgd import TorchSGD

__all__ = ["EpochSchedule", "OPTIMIZERS", "RECIPES", "SCHEDULES", "TorchSGD",
           "make_optimizer", "make_recipe_optimizer", "make_schedule", "recipe",
           "scale_milestones"]
