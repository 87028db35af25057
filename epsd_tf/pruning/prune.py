"""`prune_at_init`: step 1 of EPSD (Chen et al., AAAI 2024) in one call.

Score the prunable weights of a freshly initialised model, keep the top
`1 - sparsity` of them (optionally over `rounds` on the exponential schedule,
re-scoring the survivors from θ_init each round), and return a wrapped clone
whose weights are exactly `m ⊙ θ_init` with every other variable as initialised
(METHOD.md §1–3). Every argument is checked before any scoring starts.

Scoring batches are read once, before the first round, so every round (and the
float32/float64 stability pass) scores the same data. Given a `DataSplits`,
they are the first batches of `scoring_view(splits, method, seed)`, so they
depend on the seed only.
"""

from __future__ import annotations

import sys
from typing import Iterable

import keras
from absl import logging

from epsd_tf.distill import methods
from epsd_tf.pruning import masks as masks_lib
from epsd_tf.pruning import model_masks, scorers, stability
from epsd_tf.pruning import progress as progress_lib
from epsd_tf.pruning import report as report_lib
from epsd_tf.pruning import sanity as sanity_lib
from epsd_tf.pruning.model_state import take_batches


def prune_at_init(model: keras.Model, batches, sparsity: float,
                  scorer: str = "epsd", method=None, scope: str = "global",
                  inner_steps: int = 3, inner_lr: float = 0.1, first_order: bool = False,
                  rounds: int | None = None, keep_dense: Iterable[str] = (),
                  min_density: float = 0.0, allow_empty_layers: bool = False,
                  layer_density: str = "uniform", num_batches: int = 1,
                  sanity: str | None = None, seed: int = 0,
                  jit_compile: bool = False, score_dtype: str = "float32",
                  score_stability: bool = False) -> tuple[keras.Model, dict]:
    """Prunes `model` at initialisation; returns `(pruned wrapped clone, report)`.

    Args:
        model: built Functional/Sequential Keras model at its initial weights;
            not modified.
        batches: the scoring data: a `data.DataSplits` (scored on the first
            batches of `scoring_view(splits, method, seed)`: the same batches
            for the same seed, however often the splits were iterated),
            or an iterable / `tf.data.Dataset` of `(x, y)` (x an image batch or
            the dict of `method.batch_kind`), of which the next iteration's
            first batches are used (a pipeline that reshuffles on every
            iteration gives other batches on every call); None for data-free
            scorers.
        sparsity: fraction of the (non keep-dense) prunable weights removed, [0, 1).
        scorer: one of `scorers.SCORERS`.
        method: SD method (object or name) whose loss the `epsd` scorer uses.
        scope: `"global"` or `"layerwise"` ranking.
        inner_steps, inner_lr, first_order: ProsPr/EPSD inner loop.
        rounds: pruning rounds on the exponential schedule; None = the scorer's
            default (1, SynFlow 100).
        keep_dense: layer names or paths left unpruned.
        min_density: per-layer floor on the kept fraction.
        allow_empty_layers: permit layers with 0 kept weights.
        layer_density: `"uniform"` or `"erk"` (layer-wise scope).
        num_batches: batches summed by SNIP/GraSP.
        sanity: None, `"shuffle"`, `"invert"` or `"reinit"` (ablations).
        seed: seeds the random scorer, the sanity transforms and (with a
            `DataSplits`) the scoring batches.
        jit_compile: XLA-compile the ProsPr/EPSD meta-gradient.
        score_dtype: `"float32"` or `"float64"`: the precision of the scoring
            computation (a float64 copy of the model); the returned network
            keeps its own dtype. Masks depend on the scores only.
        score_stability: also score in the other dtype and put the overlap of
            the two kept sets (global and per layer) in the report as
            `score_stability` (before the `shuffle` sanity transform). Doubles
            the scoring cost.

    Returns:
        The pruned model (wrapped in `PruneLowMagnitude`, masks set, kernels
        `m ⊙ θ_init`) and the report dict of `report.build_report`.

    Raises:
        ValueError: for any bad argument, before scoring starts.
    """
    # --- validate everything first ---
    sparsity = masks_lib.check_sparsity(sparsity)
    record = scorers.get(scorer)
    scorers.check_score_dtype(score_dtype)
    masks_lib.check_mask_options(scope, layer_density, min_density)
    sanity_lib.check_sanity(sanity)
    method = methods.get(method)
    weights = model_masks.prunable_weights(model)  # raises if unbuilt
    if model_masks.has_masks(model):
        raise ValueError(f"Model {model.name!r} already has masks; prune an unwrapped "
                         "model (strip_masks first).")
    if not weights:
        raise ValueError(f"Model {model.name!r} has no prunable weights.")
    keep_dense = model_masks.check_keep_dense(model, keep_dense)
    pool = [w.name for w in weights if not model_masks.is_kept_dense(w, keep_dense)]
    if not pool:
        raise ValueError(f"keep_dense={list(keep_dense)} covers every prunable layer; "
                         "nothing left to prune.")
    rounds = record.default_rounds if rounds is None else rounds
    schedule = masks_lib.exponential_schedule(sparsity, rounds)
    settings = record.accepted({
        "method": method, "inner_steps": inner_steps, "inner_lr": inner_lr,
        "first_order": first_order, "num_batches": num_batches, "seed": seed,
        "jit_compile": jit_compile})
    taken = take_batches(_scoring_view(batches, method, seed, record),
                         record.batches_needed(settings), record.name)

    # --- score and mask, round by round ---
    def masks_in(dtype: str):
        score_fn = scorers.make_scorer(model, taken, record, score_dtype=dtype, **settings)
        progress = progress_lib.RoundProgress(rounds, f"Scoring {record.name} ({dtype})")
        masks = None
        for round_index, round_sparsity in enumerate(schedule):
            scores = {name: value for name, value in score_fn(masks).items()
                      if name in pool}
            ranked = sanity_lib.invert(scores) if sanity == "invert" else scores
            masks = masks_lib.masks_from_scores(
                ranked, round_sparsity, scope=scope, layer_density=layer_density,
                min_density=min_density, allow_empty_layers=allow_empty_layers,
                keep=record.keep, previous_masks=masks)
            progress.update(round_index + 1, round_sparsity)
        return masks, scores

    masks, scores = masks_in(score_dtype)
    stable = None
    if score_stability:
        other = "float32" if score_dtype == "float64" else "float64"
        stable = {"dtypes": [score_dtype, other],
                  **stability.kept_overlap(masks, masks_in(other)[0])}
        logging.info("Kept-set overlap %s vs %s scores: %.4f", score_dtype, other,
                     stable["global"])
    if sanity == "shuffle":
        masks = sanity_lib.shuffle(masks, seed)

    # --- build m ⊙ θ_init ---
    pruned = model_masks.prune_low_magnitude(model, masks=masks, keep_dense=keep_dense)
    if sanity == "reinit":
        sanity_lib.reinit(pruned, seed)
    report = report_lib.build_report(pruned, scores, target_sparsity=sparsity, settings={
        "scorer": record.name, "method": method.name, "scope": scope, "rounds": rounds,
        "layer_density": layer_density, "min_density": min_density,
        "keep_dense": list(keep_dense), "sanity": sanity, "seed": seed,
        "score_dtype": score_dtype,
        **{k: v for k, v in settings.items() if k != "method"}},
        score_stability=stable)
    report_lib.log_report(report)
    return pruned, report


def scoring_view(splits, method=None, seed: int = 0):
    """The batches EPSD scores for `splits`: `data.for_method` at epoch 0 of `seed`.

    In-memory data is keyed by `(seed, epoch 0)` (a `data.EpochClock` at 0), so
    the batches depend on the seed only: not on how often the splits' pipelines
    were iterated nor on TensorFlow's global seed. Streamed data gets a fresh
    seed-shuffled view, whose first iteration is fixed by the seed and
    TensorFlow's global seed.
    """
    from epsd_tf import data as data_lib  # not at import: `import epsd_tf` stays light
    method = methods.get(method)
    clock = data_lib.EpochClock(0) if splits.in_memory else None
    return data_lib.for_method(splits, method, seed=seed, epoch=clock)


def _scoring_view(batches, method, seed: int, record):
    """The iterable scoring batches come from (see `prune_at_init`'s `batches`)."""
    # A DataSplits exists only if epsd_tf.data was imported (it needs tf.data;
    # plain batches score without it, e.g. on the JAX backend).
    data_lib = sys.modules.get("epsd_tf.data")
    if data_lib is not None and isinstance(batches, data_lib.DataSplits):
        return None if record.data_free else scoring_view(batches, method, seed)
    if not record.data_free and data_lib is not None and hasattr(batches, "element_spec"):
        # A tf.data pipeline that reshuffles per iteration yields other batches on
        # every call: say how to get seed-only batches (issue 12, defect 5).
        logging.warning("prune_at_init scores the first batches this pipeline yields now; "
                        "a pipeline that reshuffles per iteration gives other masks on "
                        "every call. Pass the DataSplits (prune_at_init(model, splits, "
                        "...)) to score batches that depend on the seed only.")
    return batches
