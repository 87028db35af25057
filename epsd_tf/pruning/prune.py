"""`prune_at_init`: step 1 of EPSD (Chen et al., AAAI 2024) in one call.

Score the prunable weights of a freshly initialised model, keep the top
`1 - sparsity` of them (optionally over `rounds` on the exponential schedule,
re-scoring the survivors from θ_init each round), and return a wrapped clone
whose weights are exactly `m ⊙ θ_init` with every other variable as initialised
(METHOD.md §1–3). Every argument is checked before any scoring starts.
"""

from __future__ import annotations

from typing import Iterable

import keras
from absl import logging

from epsd_tf.distill import methods
from epsd_tf.pruning import masks as masks_lib
from epsd_tf.pruning import model_masks, report as report_lib, sanity as sanity_lib
from epsd_tf.pruning import scorers
from epsd_tf.pruning.model_state import take_batches


def prune_at_init(model: keras.Model, batches: Iterable | None, sparsity: float,
                  scorer: str = "epsd", method=None, scope: str = "global",
                  inner_steps: int = 3, inner_lr: float = 0.1, first_order: bool = False,
                  rounds: int | None = None, keep_dense: Iterable[str] = (),
                  min_density: float = 0.0, allow_empty_layers: bool = False,
                  layer_density: str = "uniform", num_batches: int = 1,
                  sanity: str | None = None, seed: int = 0,
                  jit_compile: bool = False) -> tuple[keras.Model, dict]:
    """Prunes `model` at initialisation; returns `(pruned wrapped clone, report)`.

    Args:
        model: built Functional/Sequential Keras model at its initial weights;
            not modified.
        batches: iterable / `tf.data.Dataset` of `(x, y)` (x an image batch or
            the dict of `method.batch_kind`); None for data-free scorers.
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
        seed: seeds the random scorer and the sanity transforms.
        jit_compile: XLA-compile the ProsPr/EPSD meta-gradient.

    Returns:
        The pruned model (wrapped in `PruneLowMagnitude`, masks set, kernels
        `m ⊙ θ_init`) and the report dict of `report.build_report`.

    Raises:
        ValueError: for any bad argument, before scoring starts.
    """
    # --- validate everything first ---
    sparsity = masks_lib.check_sparsity(sparsity)
    scorers.check_scorer(scorer)
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
    rounds = scorers.DEFAULT_ROUNDS.get(scorer, 1) if rounds is None else rounds
    schedule = masks_lib.exponential_schedule(sparsity, rounds)
    settings = scorers.scorer_settings(scorer, {
        "method": method, "inner_steps": inner_steps, "inner_lr": inner_lr,
        "first_order": first_order, "num_batches": num_batches, "seed": seed,
        "jit_compile": jit_compile})
    taken = take_batches(batches, scorers.batches_needed(scorer, settings), scorer)
    score_fn = scorers.make_scorer(model, taken, scorer, **settings)

    # --- score and mask, round by round ---
    keep = "lowest" if scorer in scorers.PRUNE_HIGHEST else "highest"
    masks = None
    for round_index, round_sparsity in enumerate(schedule):
        scores = {name: value for name, value in score_fn(masks).items() if name in pool}
        ranked = sanity_lib.invert(scores) if sanity == "invert" else scores
        masks = masks_lib.masks_from_scores(
            ranked, round_sparsity, scope=scope, layer_density=layer_density,
            min_density=min_density, allow_empty_layers=allow_empty_layers, keep=keep,
            previous_masks=masks)
        logging.info("Pruning round %d/%d (%s): sparsity %.4f", round_index + 1, rounds,
                     scorer, round_sparsity)
    if sanity == "shuffle":
        masks = sanity_lib.shuffle(masks, seed)

    # --- build m ⊙ θ_init ---
    pruned = model_masks.prune_low_magnitude(model, masks=masks, keep_dense=keep_dense)
    if sanity == "reinit":
        sanity_lib.reinit(pruned, seed)
    report = report_lib.build_report(pruned, scores, target_sparsity=sparsity, settings={
        "scorer": scorer, "method": method.name, "scope": scope, "rounds": rounds,
        "layer_density": layer_density, "min_density": min_density,
        "keep_dense": list(keep_dense), "sanity": sanity, "seed": seed,
        **{k: v for k, v in settings.items() if k != "method"}})
    report_lib.log_report(report)
    return pruned, report
