"""Pruning-at-initialisation scorers (METHOD.md §3) and the `score` entry point.

Every scorer is pure: `(model, batches, *, masks=None, **settings) ->
{weight name: score array}` with the model's variables untouched (see
`model_state`). `masks` (optional, for iterative pruning) sets `θ = m ⊙ θ_init`
before scoring. Higher scores mean "keep", except GraSP, whose score METHOD.md
defines with the opposite sense (its record's `keep`).
Each scorer is one `Scorer` record in `SCORERS`.

Papers: SNIP (Lee et al., ICLR 2019), GraSP (Wang et al., ICLR 2020), SynFlow
(Tanaka et al., NeurIPS 2020), ProsPr (Alizadeh et al., ICLR 2022), EPSD (Chen
et al., AAAI 2024).
"""

from __future__ import annotations

import dataclasses
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
        # Drawn in float32 whatever the score dtype: the same seed, the same mask.
        return [rng.random(tuple(t.shape)).astype("float32").astype(state.dtype)
                for t in state.theta_init]
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

    def compute(state, mask_list, batches):
        objective = meta_gradient.make_objective(state, method)

        def loss(prunable, batch, trainable):
            carry = meta_gradient.initial_carry(state, method, batch)  # the first step's
            return objective(state.with_prunable(prunable, trainable), batch, carry)[0]

        trainable = state.initial_trainable(mask_list)
        grad_fn = autodiff.value_and_grad(loss)
        totals = [ops.zeros_like(t) for t in state.theta_init]
        for batch in batches:
            _, grads = grad_fn(state.prunable(trainable), batch, trainable)
            totals = [t + g for t, g in zip(totals, grads)]
        return [ops.abs(g * theta) for g, theta in zip(totals, state.theta_init)]

    compiled = state.compile(compute)
    return lambda mask_list: compiled(mask_list, taken)


def _grasp(state, batches, *, num_batches: int = 1, temperature: float = 200.0):
    """GraSP `-θ ⊙ (H g)`; the highest scores are pruned (record `keep="lowest"`).

    `g = Σ_b ∇L_b` and `H g = Σ_b ∇(gᵀ ∇L_b)` by double back-propagation, with
    `L_b` the cross-entropy of `logits / temperature` on batch b (GraSP's T=200)
    and `θ = m ⊙ θ_init`.
    """
    taken = take_batches(batches, num_batches, "grasp")

    def compute(state, mask_list, batches):
        def loss(prunable, batch, trainable):
            x, y = batch
            logits = state.logits(state.with_prunable(prunable, trainable), image_of(x))
            return ops.mean(losses.cross_entropy(y, logits / temperature))

        def g_dot_grad(prunable, batch, trainable, g):
            _, grads = autodiff.value_and_grad(loss)(prunable, batch, trainable)
            return sum(ops.sum(a * b) for a, b in zip(g, grads))

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

    compiled = state.compile(compute)
    return lambda mask_list: compiled(mask_list, taken)


def _synflow(state, batches, *, input_shape=None):
    """SynFlow `|θ ⊙ ∂R/∂θ|`, `R = 1ᵀ f(1; |θ|)` (data-free).

    All floating-point variables are replaced by their absolute values, the
    input is one all-ones example and BatchNorm runs in inference mode. The
    100-round exponential schedule is run by `prune_at_init` (`default_rounds`).

    Args:
        input_shape: per-example input shape; defaults to the model's.
    """
    model = state.model
    if input_shape is None:
        if not model.inputs or any(d is None for d in model.inputs[0].shape[1:]):
            raise ValueError("synflow needs a fixed input shape; pass input_shape=(H, W, C).")
        input_shape = tuple(model.inputs[0].shape[1:])

    def compute(state, mask_list):
        ones = ops.ones((1, *input_shape), state.dtype)
        abs_non_trainable = [ops.abs(v) if "float" in str(v.dtype) else v
                             for v in state.non_trainable]

        def r(prunable, abs_trainable):
            logits = state.logits(state.with_prunable(prunable, abs_trainable), ones,
                                  training=False, non_trainable=abs_non_trainable)
            return ops.sum(ops.cast(logits, state.dtype))

        abs_trainable = [ops.abs(v) for v in state.initial_trainable(mask_list)]
        theta = state.prunable(abs_trainable)
        _, grads = autodiff.value_and_grad(r)(theta, abs_trainable)
        return [ops.abs(t * g) for t, g in zip(theta, grads)]

    return state.compile(compute)


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


def _data_free(settings: Mapping) -> int:
    return 0


def _summed(settings: Mapping) -> int:
    return int(settings.get("num_batches", 1))


def _epsd_batches(settings: Mapping) -> int:
    return meta_gradient.batches_needed(methods.get(settings.get("method")),
                                        _check_inner_steps(settings.get("inner_steps", 3)))


def _prospr_batches(settings: Mapping) -> int:  # cross-entropy: no method
    return _epsd_batches({**settings, "method": None})


@dataclasses.dataclass(frozen=True)
class Scorer:
    """Everything that makes a scorer, in one record (METHOD.md §2–3).

    A record is also the public scoring function:
    `SCORERS[name](model, batches=None, *, masks=None, **settings)` is
    `score(model, batches, name, masks=masks, **settings)`.

    Attributes:
        name: the scorer's name (the key of `SCORERS`).
        build: `(state, batches, **settings) -> compute(mask_list) -> [scores]`.
        settings: keyword settings `build` accepts.
        keep: which end of the ranking is kept, `"highest"` or `"lowest"`
            (GraSP removes its highest scores).
        default_rounds: pruning rounds when `prune_at_init(rounds=None)`
            (SynFlow's 100-round exponential schedule).
        batches_needed: `settings -> number of (x, y) batches read`.
        meta_gradient: whether the score is a meta-gradient through unrolled
            SGD steps (ProsPr, EPSD): its cost is counted per inner step.
    """

    name: str
    build: Callable
    settings: tuple[str, ...]
    keep: str = "highest"
    default_rounds: int = 1
    batches_needed: Callable[[Mapping], int] = _data_free
    meta_gradient: bool = False

    @property
    def data_free(self) -> bool:
        return self.batches_needed is _data_free

    def accepted(self, settings: Mapping) -> dict:
        """The subset of `settings` this scorer takes."""
        return {k: v for k, v in settings.items() if k in self.settings}

    def check_settings(self, settings: Mapping) -> None:
        unknown = sorted(set(settings) - set(self.settings))
        if unknown:
            raise ValueError(f"Scorer {self.name!r} does not take settings {unknown}; it "
                             f"takes {list(self.settings)}")

    def __call__(self, model, batches=None, *, masks=None, **settings):
        return score(model, batches, self, masks=masks, **settings)


_META = ("inner_steps", "inner_lr", "first_order", "jit_compile")

# name -> Scorer: the one table of scorers.
SCORERS = {s.name: s for s in (
    Scorer("random", _random, ("seed",)),
    Scorer("magnitude", _magnitude, ()),
    Scorer("snip", _snip, ("num_batches", "method"), batches_needed=_summed),
    Scorer("grasp", _grasp, ("num_batches", "temperature"), keep="lowest",
           batches_needed=_summed),
    Scorer("synflow", _synflow, ("input_shape",), default_rounds=100),
    Scorer("prospr", _prospr, _META, batches_needed=_prospr_batches, meta_gradient=True),
    Scorer("epsd", _epsd, ("method", *_META), batches_needed=_epsd_batches,
           meta_gradient=True),
)}
# Derived views of `SCORERS`, kept for callers of the earlier API.
PRUNE_HIGHEST = frozenset(n for n, s in SCORERS.items() if s.keep == "lowest")
DEFAULT_ROUNDS = {n: s.default_rounds for n, s in SCORERS.items() if s.default_rounds != 1}
SCORE_DTYPES = ("float32", "float64")


def get(scorer: str | Scorer) -> Scorer:
    """The `Scorer` record of a name (or the record itself); ValueError if unknown."""
    if isinstance(scorer, Scorer):
        return scorer
    if not isinstance(scorer, str) or scorer not in SCORERS:
        raise ValueError(f"Unknown scorer {scorer!r}; valid scorers: {sorted(SCORERS)}")
    return SCORERS[scorer]


def check_scorer(scorer: str | Scorer) -> str:
    """The scorer's name; ValueError naming the valid scorers if unknown."""
    return get(scorer).name


def check_score_dtype(score_dtype: str) -> str:
    """`score_dtype` if it is `"float32"` or `"float64"`, else a ValueError."""
    if score_dtype not in SCORE_DTYPES:
        raise ValueError(f"Unknown score_dtype {score_dtype!r}; valid: {list(SCORE_DTYPES)}")
    return score_dtype


def make_scorer(model: keras.Model, batches: Iterable | None, scorer: str | Scorer = "epsd",
                *, score_dtype: str = "float32",
                **settings) -> Callable[[Mapping | None], dict[str, np.ndarray]]:
    """Prepares a scorer once; returns `fn(masks=None) -> {weight name: scores}`.

    Reads the model's parameters and the scoring batches now and compiles the
    computation on the first call; later calls with other masks (iterative
    pruning rounds) reuse the graph.

    Args:
        model: a built Keras model (wrapped or not); never modified.
        batches: iterable / `tf.data.Dataset` of `(x, y)`; `x` an image batch or
            the dict of the SD method's batch kind. Unused by data-free scorers.
        scorer: a name in `SCORERS` (or its record).
        score_dtype: `"float32"` or `"float64"`: the dtype of the whole scoring
            computation (a float64 copy of the model, see `model_state`) and of
            the returned scores.
        **settings: the scorer's keyword arguments (see its docstring).

    Raises:
        ValueError: unknown scorer, setting or score_dtype, too few batches,
            wrong batch kind, a model with no prunable weights.
    """
    record = get(scorer)
    record.check_settings(settings)
    # The backend's float64 switch (JAX x64) is on only while scoring.
    with autodiff.precision(check_score_dtype(score_dtype)):
        state = ModelState(model, dtype=score_dtype)
        compute = record.build(state, batches, **settings)

    def scores(masks: Mapping | None = None) -> dict[str, np.ndarray]:
        with autodiff.precision(score_dtype):
            result = state.to_scores(compute(state.mask_list(masks)))
        bad = [name for name, value in result.items() if not np.all(np.isfinite(value))]
        if bad:
            raise ValueError(f"Scorer {record.name!r} produced non-finite scores for {bad}.")
        return result
    return scores


def score(model: keras.Model, batches: Iterable | None, scorer: str | Scorer = "epsd", *,
          masks: Mapping | None = None, score_dtype: str = "float32",
          **settings) -> dict[str, np.ndarray]:
    """Scores every prunable weight of `model`: `make_scorer(...)(masks)`.

    `masks` (iterative pruning) sets `θ = m ⊙ θ_init` before scoring. Returns
    `{weight name: array shaped like the kernel}` in `score_dtype`.
    """
    return make_scorer(model, batches, scorer, score_dtype=score_dtype, **settings)(masks)


def scorer_settings(scorer: str | Scorer, settings: Mapping) -> dict:
    """The subset of `settings` that `scorer` accepts (for callers holding all options)."""
    return get(scorer).accepted(settings)


def batches_needed(scorer: str | Scorer, settings: Mapping) -> int:
    """How many `(x, y)` batches `scorer` reads with these settings."""
    return get(scorer).batches_needed(settings)
