"""Pruning-at-initialisation scorers (METHOD.md §3) and the `score` entry point.

Every scorer is pure: `(model, batches, *, masks=None, **settings) ->
{weight name: score array}` with the model's variables untouched (see
`model_state`). `masks` (optional, for iterative pruning) sets `θ = m ⊙ θ_init`
before scoring. Higher scores mean "keep", except GraSP, whose score METHOD.md
defines with the opposite sense (`PRUNE_HIGHEST`).

Papers: SNIP (Lee et al., ICLR 2019), GraSP (Wang et al., ICLR 2020), SynFlow
(Tanaka et al., NeurIPS 2020), ProsPr (Alizadeh et al., ICLR 2022), EPSD (Chen
et al., AAAI 2024).
"""

from __future__ import annotations

import inspect
from typing import Callable, Iterable, Mapping

import keras
import numpy as np
from keras import ops

from epsd_tf.distill import losses, methods
from epsd_tf.pruning import autodiff, meta_gradient
from epsd_tf.pruning.model_state import ModelState, image_of, take_batches


def _random(state, batches, *, seed: int = 0):
    """Uniform random scores, seeded (data-free)."""
    def compute(mask_list):
        rng = np.random.default_rng(seed)
        return [rng.random(tuple(t.shape)).astype("float32") for t in state.theta_init]
    return compute


def _magnitude(state, batches):
    """`|θ_init|` (data-free)."""
    return lambda mask_list: [ops.abs(theta) for theta in state.theta_init]


def _snip(state, batches, *, num_batches: int = 1, method=None):
    """SNIP connection sensitivity `|g ⊙ θ_init|`, g summed over `num_batches`.

    `g = ∂L/∂θ` at `θ = m ⊙ θ_init`, L = cross-entropy, or with `method` the
    SD loss as EPSD's objective forms it at its first step (so EPSD with zero
    inner steps is this score, normalised).
    """
    method = methods.get(method)
    taken = take_batches(batches, num_batches, "snip")
    meta_gradient.check_batch_kind(method, taken[0][0])
    objective = meta_gradient.make_objective(state, method)

    def loss(prunable, batch, trainable):
        carry = meta_gradient.initial_carry(state, method, batch)  # the first step's
        return objective(state.with_prunable(prunable, trainable), batch, carry)[0]

    def compute(mask_list, batches):
        trainable = state.initial_trainable(mask_list)
        grad_fn = autodiff.value_and_grad(loss)
        totals = [ops.zeros_like(t) for t in state.theta_init]
        for batch in batches:
            _, grads = grad_fn(state.prunable(trainable), batch, trainable)
            totals = [t + g for t, g in zip(totals, grads)]
        return [ops.abs(g * theta) for g, theta in zip(totals, state.theta_init)]

    compiled = autodiff.function(compute)
    return lambda mask_list: compiled(mask_list, taken)


def _grasp(state, batches, *, num_batches: int = 1, temperature: float = 200.0):
    """GraSP `-θ ⊙ (H g)`; the highest scores are pruned (see `PRUNE_HIGHEST`).

    `g = Σ_b ∇L_b` and `H g = Σ_b ∇(gᵀ ∇L_b)` by double back-propagation, with
    `L_b` the cross-entropy of `logits / temperature` on batch b (GraSP's T=200)
    and `θ = m ⊙ θ_init`.
    """
    taken = take_batches(batches, num_batches, "grasp")

    def loss(prunable, batch, trainable):
        x, y = batch
        logits = state.logits(state.with_prunable(prunable, trainable), image_of(x))
        return ops.mean(losses.cross_entropy(y, logits / temperature))

    def g_dot_grad(prunable, batch, trainable, g):
        _, grads = autodiff.value_and_grad(loss)(prunable, batch, trainable)
        return sum(ops.sum(a * b) for a, b in zip(g, grads))

    def compute(mask_list, batches):
        trainable = state.initial_trainable(mask_list)
        theta = state.prunable(trainable)
        g = [ops.zeros_like(t) for t in theta]
        for batch in batches:
            _, grads = autodiff.value_and_grad(loss)(theta, batch, trainable)
            g = [a + ops.stop_gradient(b) for a, b in zip(g, grads)]
        hg = [ops.zeros_like(t) for t in theta]
        for batch in batches:
            _, grads = autodiff.value_and_grad(g_dot_grad)(theta, batch, trainable, g)
            hg = [a + b for a, b in zip(hg, grads)]
        return [-t * h for t, h in zip(theta, hg)]

    compiled = autodiff.function(compute)
    return lambda mask_list: compiled(mask_list, taken)


def _synflow(state, batches, *, input_shape=None):
    """SynFlow `|θ ⊙ ∂R/∂θ|`, `R = 1ᵀ f(1; |θ|)` (data-free).

    All floating-point variables are replaced by their absolute values, the
    input is one all-ones example and BatchNorm runs in inference mode. The
    100-round exponential schedule is run by `prune_at_init` (`DEFAULT_ROUNDS`).

    Args:
        input_shape: per-example input shape; defaults to the model's.
    """
    model = state.model
    if input_shape is None:
        if not model.inputs or any(d is None for d in model.inputs[0].shape[1:]):
            raise ValueError("synflow needs a fixed input shape; pass input_shape=(H, W, C).")
        input_shape = tuple(model.inputs[0].shape[1:])
    ones = ops.ones((1, *input_shape), "float32")
    abs_non_trainable = [ops.abs(v) if "float" in str(v.dtype) else v
                         for v in state.non_trainable]

    def r(prunable, abs_trainable):
        logits = state.logits(state.with_prunable(prunable, abs_trainable), ones,
                              training=False, non_trainable=abs_non_trainable)
        return ops.sum(ops.cast(logits, "float32"))

    def compute(mask_list):
        abs_trainable = [ops.abs(v) for v in state.initial_trainable(mask_list)]
        theta = state.prunable(abs_trainable)
        _, grads = autodiff.value_and_grad(r)(theta, abs_trainable)
        return [ops.abs(t * g) for t, g in zip(theta, grads)]

    return autodiff.function(compute)


def _check_inner_steps(inner_steps) -> int:
    if int(inner_steps) != inner_steps or int(inner_steps) < 0:
        raise ValueError(f"inner_steps must be an integer >= 0, got {inner_steps!r}")
    return int(inner_steps)


def _meta(state, batches, method, inner_steps, inner_lr, first_order, jit_compile, who):
    inner_steps = _check_inner_steps(inner_steps)
    taken = take_batches(batches, meta_gradient.batches_needed(method, inner_steps), who)
    meta_gradient.check_batch_kind(method, taken[0][0])
    return meta_gradient.build_meta_gradient(state, taken, method, inner_steps,
                                             float(inner_lr), bool(first_order),
                                             jit_compile)


def _prospr(state, batches, *, inner_steps: int = 3, inner_lr: float = 0.1,
            first_order: bool = False, jit_compile: bool = False):
    """ProsPr: meta-gradient of the cross-entropy through `inner_steps` SGD steps."""
    return _meta(state, batches, methods.NoDistillation(), inner_steps, inner_lr,
                 first_order, jit_compile, "prospr")


def _epsd(state, batches, *, method=None, inner_steps: int = 3, inner_lr: float = 0.1,
          first_order: bool = False, jit_compile: bool = False):
    """EPSD: meta-gradient of the SD method's loss (METHOD.md §2).

    `method`: a `distill.methods` object or name (DLB, CS-KD, PS-KD); None is
    plain CE, i.e. ProsPr.
    """
    return _meta(state, batches, methods.get(method), inner_steps, inner_lr,
                 first_order, jit_compile, "epsd")


_BUILDERS = {"random": _random, "magnitude": _magnitude, "snip": _snip, "grasp": _grasp,
             "synflow": _synflow, "prospr": _prospr, "epsd": _epsd}


def _settings_of(scorer: str) -> list[str]:
    return list(inspect.signature(_BUILDERS[scorer]).parameters)[2:]


def make_scorer(model: keras.Model, batches: Iterable | None, scorer: str = "epsd",
                **settings) -> Callable[[Mapping | None], dict[str, np.ndarray]]:
    """Prepares a scorer once; returns `fn(masks=None) -> {weight name: scores}`.

    Reads the model's parameters and the scoring batches now and compiles the
    computation on the first call; later calls with other masks (iterative
    pruning rounds) reuse the graph.

    Args:
        model: a built Keras model (wrapped or not); never modified.
        batches: iterable / `tf.data.Dataset` of `(x, y)`; `x` an image batch or
            the dict of the SD method's batch kind. Unused by data-free scorers.
        scorer: one of `SCORERS`.
        **settings: the scorer's keyword arguments (see its docstring).

    Raises:
        ValueError: unknown scorer or setting, too few batches, wrong batch kind,
            a model with no prunable weights.
    """
    check_scorer(scorer)
    unknown = sorted(set(settings) - set(_settings_of(scorer)))
    if unknown:
        raise ValueError(f"Scorer {scorer!r} does not take settings {unknown}; it takes "
                         f"{_settings_of(scorer)}")
    state = ModelState(model)
    compute = _BUILDERS[scorer](state, batches, **settings)

    def scores(masks: Mapping | None = None) -> dict[str, np.ndarray]:
        result = state.to_scores(compute(state.mask_list(masks)))
        bad = [name for name, value in result.items() if not np.all(np.isfinite(value))]
        if bad:
            raise ValueError(f"Scorer {scorer!r} produced non-finite scores for {bad}.")
        return result
    return scores


def score(model: keras.Model, batches: Iterable | None, scorer: str = "epsd", *,
          masks: Mapping | None = None, **settings) -> dict[str, np.ndarray]:
    """Scores every prunable weight of `model`: `make_scorer(...)(masks)`.

    `masks` (iterative pruning) sets `θ = m ⊙ θ_init` before scoring. Returns
    `{weight name: float32 array shaped like the kernel}`.
    """
    return make_scorer(model, batches, scorer, **settings)(masks)


def _public(name: str):
    def scorer(model, batches=None, *, masks=None, **settings):
        return score(model, batches, name, masks=masks, **settings)
    scorer.__name__ = f"{name}_scores"
    scorer.__doc__ = _BUILDERS[name].__doc__
    return scorer


# name -> `(model, batches, *, masks=None, **settings) -> {weight name: scores}`.
SCORERS = {name: _public(name) for name in _BUILDERS}
# Scorers whose highest scores are removed (GraSP, METHOD.md §3).
PRUNE_HIGHEST = frozenset({"grasp"})
# Pruning rounds a scorer runs by default (SynFlow's iterative schedule).
DEFAULT_ROUNDS = {"synflow": 100}


def check_scorer(scorer: str) -> str:
    if scorer not in SCORERS:
        raise ValueError(f"Unknown scorer {scorer!r}; valid scorers: {sorted(SCORERS)}")
    return scorer


def scorer_settings(scorer: str, settings: Mapping) -> dict:
    """The subset of `settings` that `scorer` accepts (for callers holding all options)."""
    accepted = _settings_of(check_scorer(scorer))
    return {k: v for k, v in settings.items() if k in accepted}


def batches_needed(scorer: str, settings: Mapping) -> int:
    """How many `(x, y)` batches `scorer` reads with these settings."""
    check_scorer(scorer)
    if scorer in ("random", "magnitude", "synflow"):
        return 0
    if scorer in ("snip", "grasp"):
        return int(settings.get("num_batches", 1))
    method = methods.get(settings.get("method") if scorer == "epsd" else None)
    return meta_gradient.batches_needed(method, int(settings.get("inner_steps", 3)))
