"""Epoch-based learning-rate schedules: linear warm-up, then multistep, cosine
or constant (the schedules of the SD recipes, METHOD.md §4).

`EpochSchedule` counts optimizer steps (`optimizer.iterations`);
`make_schedule` takes milestones in epochs and converts them with
`steps_per_epoch`. Recipes state milestones for their own epoch count;
`scale_milestones` maps them to any other epoch count proportionally (e.g.
DLB's 150/180/210 of 240 epochs become 62/75/88 of 100 epochs).
"""

from __future__ import annotations

import math
from typing import Sequence

import keras
from keras import ops

SCHEDULES = ("multistep", "cosine", "constant")


@keras.saving.register_keras_serializable(package="epsd_tf")
class EpochSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then multistep, cosine or constant learning rate.

    All arguments count optimizer steps.

    Args:
        learning_rate: peak (post-warm-up) learning rate.
        schedule: "multistep", "cosine" or "constant".
        total_steps: training length (cosine decays to 0 at this step).
        boundaries: steps at which multistep multiplies the rate by `gamma`.
        gamma: multistep factor.
        warmup_steps: steps of linear warm-up from `learning_rate / warmup_steps`.
    """

    def __init__(self, learning_rate: float, schedule: str = "multistep",
                 total_steps: int = 1, boundaries: Sequence[int] = (),
                 gamma: float = 0.1, warmup_steps: int = 0):
        if schedule not in SCHEDULES:
            raise ValueError(f"Unknown schedule {schedule!r}; valid: {SCHEDULES}")
        self.learning_rate = float(learning_rate)
        self.schedule = schedule
        self.total_steps = int(total_steps)
        self.boundaries = tuple(int(b) for b in boundaries)
        self.gamma = float(gamma)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        if self.schedule == "multistep":
            # Number of boundaries passed, vectorised: sum(step >= b).
            passed = ops.sum(ops.cast(
                ops.greater_equal(step, ops.convert_to_tensor(
                    self.boundaries or (math.inf,), "float32")), "float32"))
            rate = self.learning_rate * ops.power(self.gamma, passed)
        elif self.schedule == "cosine":
            decay_steps = max(self.total_steps - self.warmup_steps, 1)
            progress = ops.clip((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
            rate = 0.5 * self.learning_rate * (1.0 + ops.cos(math.pi * progress))
        else:
            rate = ops.convert_to_tensor(self.learning_rate, "float32")
        if self.warmup_steps > 0:
            warm = self.learning_rate * (step + 1.0) / self.warmup_steps
            rate = ops.where(step < self.warmup_steps, warm, rate)
        return rate

    def get_config(self) -> dict:
        return {"learning_rate": self.learning_rate, "schedule": self.schedule,
                "total_steps": self.total_steps, "boundaries": list(self.boundaries),
                "gamma": self.gamma, "warmup_steps": self.warmup_steps}


def scale_milestones(milestones: Sequence[int], recipe_epochs: int, epochs: int
                     ) -> tuple[int, ...]:
    """Maps milestones stated for `recipe_epochs` to `epochs`, proportionally."""
    if recipe_epochs <= 0 or epochs <= 0:
        raise ValueError(f"epochs must be > 0, got recipe_epochs={recipe_epochs!r}, "
                         f"epochs={epochs!r}")
    return tuple(int(round(m * epochs / recipe_epochs)) for m in milestones)


def make_schedule(learning_rate: float, *, schedule: str = "multistep",
                  milestones: Sequence[int] = (), gamma: float = 0.1,
                  steps_per_epoch: int = 1, epochs: int = 1,
                  warmup_epochs: int = 0) -> EpochSchedule:
    """An `EpochSchedule` from epoch-based settings (milestones in epochs)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"Unknown schedule {schedule!r}; valid: {SCHEDULES}")
    if learning_rate <= 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    if steps_per_epoch <= 0 or epochs <= 0:
        raise ValueError(f"steps_per_epoch and epochs must be > 0, got "
                         f"steps_per_epoch={steps_per_epoch!r}, epochs={epochs!r}")
    if warmup_epochs < 0 or warmup_epochs >= epochs:
        raise ValueError(f"warmup_epochs must be in [0, epochs={epochs}), "
                         f"got {warmup_epochs!r}")
    milestones = tuple(milestones)
    if any(m <= 0 for m in milestones) or list(milestones) != sorted(set(milestones)):
        raise ValueError(f"milestones must be increasing positive epochs, got {milestones!r}")
    if gamma <= 0:
        raise ValueError(f"gamma must be > 0, got {gamma!r}")
    return EpochSchedule(
        learning_rate, schedule=schedule, total_steps=epochs * steps_per_epoch,
        boundaries=[m * steps_per_epoch for m in milestones], gamma=gamma,
        warmup_steps=warmup_epochs * steps_per_epoch)
