"""`make_optimizer`: a `TorchSGD` with an epoch-based schedule from plain settings.

The one optimizer factory of the project: `experiment.run` calls it (gin binds
`run.make_optimizer = @make_optimizer`), Python users call it directly, and the
recipes of `recipes.py` are settings for it.
"""

from __future__ import annotations

from typing import Sequence

import keras

from epsd_tf.optim.schedules import make_schedule
from epsd_tf.optim.sgd import TorchSGD

OPTIMIZERS = ("sgd",)


def make_optimizer(name: str = "sgd", *, learning_rate: float = 0.1,
                   momentum: float = 0.9, nesterov: bool = False,
                   weight_decay: float = 5e-4, schedule: str = "multistep",
                   milestones: Sequence[int] = (), gamma: float = 0.1,
                   steps_per_epoch: int = 1, epochs: int = 1,
                   warmup_epochs: int = 0) -> keras.optimizers.Optimizer:
    """SGD with coupled L2 weight decay and an epoch-based schedule.

    Args:
        name: optimizer name; only "sgd" (`TorchSGD`).
        learning_rate: peak learning rate.
        momentum, nesterov: SGD momentum settings.
        weight_decay: coupled L2 coefficient (PyTorch `weight_decay`).
        schedule: "multistep", "cosine" or "constant".
        milestones: epochs at which multistep multiplies the rate by `gamma`
            (already for this run's `epochs`; see `scale_milestones`).
        gamma: multistep factor.
        steps_per_epoch, epochs: training length, to convert epochs to steps.
        warmup_epochs: epochs of linear warm-up.

    Returns:
        A `TorchSGD` whose learning rate is an `EpochSchedule`.

    Raises:
        ValueError: unknown optimizer or schedule, or a setting out of range.
    """
    if name != "sgd":
        raise ValueError(f"Unknown optimizer {name!r}; valid: {OPTIMIZERS}")
    rate = make_schedule(learning_rate, schedule=schedule, milestones=milestones,
                         gamma=gamma, steps_per_epoch=steps_per_epoch, epochs=epochs,
                         warmup_epochs=warmup_epochs)
    return TorchSGD(rate, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
