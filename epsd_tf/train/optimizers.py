"""Optimizers and learning-rate schedules of the SD training recipes.

Pure functions, no gin: `experiment.run` (and gin) pick a recipe by name or
pass every setting explicitly.

Weight decay. The DLB, CS-KD and PS-KD papers train with PyTorch's
`torch.optim.SGD(..., weight_decay=wd)`, which is *coupled* L2: the gradient
becomes `g + wd · w` and then goes through momentum. Keras 3's optimizer
`weight_decay` argument is *decoupled* (`w -= lr · wd · w`, outside momentum),
which is a different regulariser for SGD with momentum. To reproduce the
recipes we implement the coupled form in `TorchSGD.update_step` and never set
the Keras `weight_decay` argument. `TorchSGD` also keeps PyTorch's momentum
convention (`buf = μ·buf + g; w -= lr·buf`, Nesterov: `w -= lr·(g + μ·buf)`),
so a learning-rate drop takes effect at once instead of being smeared by a
momentum buffer that already holds the old learning rate (Keras' SGD stores
`lr·g` in its buffer). Pruned weights stay exactly 0 under this update: their
gradient and value are 0, so `g + wd·w`, the buffer and the step are 0 too.

Schedules count optimizer steps (`optimizer.iterations`); milestones are given
in epochs and converted with `steps_per_epoch`. Recipes (METHOD.md §4) state
milestones for their own epoch count; `scale_milestones` maps them to any
other epoch count proportionally (e.g. DLB's 150/180/210 of 240 epochs become
62/75/88 of 100 epochs).
"""

from __future__ import annotations

import math
from typing import Sequence

import keras
from keras import ops

# METHOD.md §4. Milestones are epochs out of `epochs`.
RECIPES = {
    "dlb": {  # Shen et al., CVPR 2022 (official code).
        "optimizer": "sgd", "learning_rate": 0.05, "momentum": 0.9, "nesterov": True,
        "weight_decay": 5e-4, "batch_size": 64, "epochs": 240,
        "schedule": "multistep", "milestones": (150, 180, 210), "gamma": 0.1,
    },
    "cskd": {  # Yun et al., CVPR 2020.
        "optimizer": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": False,
        "weight_decay": 1e-4, "batch_size": 128, "epochs": 200,
        "schedule": "multistep", "milestones": (100, 150), "gamma": 0.1,
    },
    "pskd": {  # Kim et al., ICCV 2021.
        "optimizer": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": True,
        "weight_decay": 5e-4, "batch_size": 128, "epochs": 300,
        "schedule": "multistep", "milestones": (150, 225), "gamma": 0.1,
    },
}

SCHEDULES = ("multistep", "cosine", "constant")
OPTIMIZERS = ("sgd",)


@keras.saving.register_keras_serializable(package="epsd_tf")
class TorchSGD(keras.optimizers.Optimizer):
    """SGD with PyTorch semantics: coupled L2 weight decay and PyTorch momentum.

    Per variable `w` with gradient `g` (dampening 0, as in the recipes):
        d = g + weight_decay · w
        buf = momentum · buf + d
        step = d + momentum · buf   if nesterov else   buf
        w = w - lr · step

    Args:
        learning_rate: float or `LearningRateSchedule`.
        momentum: in [0, 1).
        nesterov: Nesterov momentum (needs momentum > 0).
        weight_decay: coupled L2 coefficient (>= 0), applied to every trainable
            variable, biases and BatchNorm included, as PyTorch's `weight_decay`.
        name, **kwargs: passed to `keras.optimizers.Optimizer` (its own
            decoupled `weight_decay` is not accepted here).
    """

    def __init__(self, learning_rate=0.1, momentum: float = 0.9, nesterov: bool = False,
                 weight_decay: float = 0.0, name: str = "torch_sgd", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        momentum = float(momentum)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        if nesterov and momentum == 0.0:
            raise ValueError("nesterov=True needs momentum > 0, got momentum=0")
        weight_decay = float(weight_decay)
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
        self.momentum = momentum
        self.nesterov = bool(nesterov)
        self.l2_weight_decay = weight_decay

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = []
        if self.momentum != 0:
            self.momentums = self.add_optimizer_variables(variables, "momentum")

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        direction = ops.cast(gradient, variable.dtype)
        if self.l2_weight_decay:
            direction = direction + ops.cast(self.l2_weight_decay, variable.dtype) * variable
        if self.momentum != 0:
            buffer = self.momentums[self._get_variable_index(variable)]
            momentum = ops.cast(self.momentum, variable.dtype)
            self.assign(buffer, momentum * buffer + direction)
            direction = direction + momentum * buffer if self.nesterov else buffer
        self.assign_sub(variable, learning_rate * direction)

    def get_config(self) -> dict:
        config = super().get_config()
        config.pop("weight_decay", None)  # Keras' decoupled decay, always None here.
        config.update({"momentum": self.momentum, "nesterov": self.nesterov,
                       "weight_decay": self.l2_weight_decay})
        return config


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
    """
    if name != "sgd":
        raise ValueError(f"Unknown optimizer {name!r}; valid: {OPTIMIZERS}")
    rate = make_schedule(learning_rate, schedule=schedule, milestones=milestones,
                         gamma=gamma, steps_per_epoch=steps_per_epoch, epochs=epochs,
                         warmup_epochs=warmup_epochs)
    return TorchSGD(rate, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)


def recipe(name: str, epochs: int | None = None) -> dict:
    """A copy of `RECIPES[name]`, milestones scaled to `epochs` if given."""
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
    """
    settings = recipe(name, epochs)
    settings.pop("batch_size")
    optimizer_name = settings.pop("optimizer")
    settings.update(overrides)
    unknown = set(settings) - set(make_optimizer.__kwdefaults__)
    if unknown:
        raise ValueError(f"Unknown optimizer settings {sorted(unknown)}; valid: "
                         f"{sorted(make_optimizer.__kwdefaults__)}")
    return make_optimizer(optimizer_name, steps_per_epoch=steps_per_epoch, **settings)
