"""Masks from scores: exact counts, ERK, min_density, iterative, sanity transforms."""

import numpy as np
import pytest

from epsd_tf import pruning
from tests.pruning.helpers import small_cnn

SHAPES = {"a/kernel": (3, 3, 3, 8), "b/kernel": (3, 3, 8, 16), "c/kernel": (16, 10),
          "d/kernel": (7,)}


def random_scores(seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=s) for k, s in SHAPES.items()}


def masks_from(scores, sparsity, **kwargs):
    """masks_from_scores, tolerating empty layers (tested on their own below)."""
    return pruning.masks_from_scores(scores, sparsity, allow_empty_layers=True, **kwargs)


def kept(masks):
    return int(sum(m.sum() for m in masks.values()))


N = sum(int(np.prod(s)) for s in SHAPES.values())


@pytest.mark.parametrize("scope,density", [("global", "uniform"), ("layerwise", "uniform"),
                                           ("layerwise", "erk")])
@pytest.mark.parametrize("sparsity", [0.0, 0.36, 0.59, 0.9, 0.95, 0.98])
def test_exact_kept_count(scope, density, sparsity):
    masks = pruning.masks_from_scores(random_scores(), sparsity, scope=scope,
                                      layer_density=density, allow_empty_layers=True)
    assert abs(kept(masks) - (1 - sparsity) * N) <= 0.5 + 1e-9
    assert all(set(np.unique(m)) <= {0.0, 1.0} and m.shape == SHAPES[k]
               for k, m in masks.items())


def test_global_keeps_the_top_scores_and_keep_lowest_the_bottom():
    scores = random_scores()
    masks = masks_from(scores, 0.75)
    kept_values = np.concatenate([scores[k][masks[k] == 1] for k in scores])
    dropped = np.concatenate([scores[k][masks[k] == 0] for k in scores])
    assert kept_values.min() >= dropped.max()
    low = masks_from(scores, 0.75, keep="lowest")
    assert kept(low) == kept(masks)
    assert np.concatenate([scores[k][low[k] == 1] for k in scores]).max() <= \
        np.concatenate([scores[k][low[k] == 0] for k in scores]).min()


def test_layerwise_uniform_density_per_layer_and_erk_favours_small_layers():
    masks = pruning.masks_from_scores(random_scores(), 0.8, scope="layerwise")
    for name, mask in masks.items():
        assert abs(mask.sum() - 0.2 * mask.size) <= 1
    erk = pruning.masks_from_scores(random_scores(), 0.8, scope="layerwise",
                                    layer_density="erk")
    density = {k: m.mean() for k, m in erk.items()}
    assert density["d/kernel"] > density["a/kernel"] > density["b/kernel"]
    assert max(density.values()) <= 1.0


def test_min_density_prevents_collapse_and_empty_layers_are_errors():
    scores = random_scores()
    scores["a/kernel"] = scores["a/kernel"] - 100.0  # a layer global ranking would drop
    with pytest.raises(ValueError, match="Layers left with no weights .*\\['a/kernel'\\]"):
        pruning.masks_from_scores(scores, 0.9)
    empty = pruning.masks_from_scores(scores, 0.9, allow_empty_layers=True)
    assert empty["a/kernel"].sum() == 0
    guarded = pruning.masks_from_scores(scores, 0.9, min_density=0.05)
    assert guarded["a/kernel"].sum() == np.ceil(0.05 * 216)
    assert abs(kept(guarded) - 0.1 * N) <= 0.5
    with pytest.raises(ValueError, match="min_density=0.5 needs"):
        pruning.masks_from_scores(scores, 0.9, min_density=0.5)


def test_iterative_keeps_only_survivors_and_schedule_is_exponential():
    schedule = pruning.exponential_schedule(0.9, 3)
    np.testing.assert_allclose([1 - s for s in schedule], [0.1 ** (1 / 3), 0.1 ** (2 / 3), 0.1])
    masks = None
    for round_index, s in enumerate(schedule):
        new = masks_from(random_scores(round_index), s, previous_masks=masks)
        if masks is not None:
            assert all(np.all(new[k] <= masks[k]) for k in new)
        assert abs(kept(new) - (1 - s) * N) <= 0.5
        masks = new


def test_shuffle_keeps_counts_and_changes_positions():
    masks = masks_from(random_scores(), 0.7)
    shuffled = pruning.shuffle(masks, seed=1)
    for name in masks:
        assert shuffled[name].sum() == masks[name].sum()
        if 0 < masks[name].sum() < masks[name].size:
            assert not np.array_equal(shuffled[name], masks[name])


def test_invert_keeps_the_lowest_scores_at_the_same_count():
    scores = random_scores()
    normal = masks_from(scores, 0.7)
    inverted = masks_from(pruning.invert(scores), 0.7)
    assert kept(inverted) == kept(normal)
    lowest = np.concatenate([scores[k][inverted[k] == 1] for k in scores]).max()
    assert lowest <= np.concatenate([scores[k][inverted[k] == 0] for k in scores]).min()


def test_reinit_keeps_mask_and_changes_weights():
    pruned, _ = pruning.prune_at_init(small_cnn(), None, 0.8, scorer="magnitude")
    masks = pruning.get_masks(pruned)
    before = {k: v.numpy().copy() for k, v in pruning.get_prunable_weights(pruned).items()}
    pruning.reinit(pruned, seed=5)
    after = pruning.get_prunable_weights(pruned)
    for name, mask in masks.items():
        np.testing.assert_array_equal(pruning.get_masks(pruned)[name], mask)
        assert np.all(after[name].numpy()[mask == 0] == 0)
        assert np.all(after[name].numpy()[mask == 1] != before[name][mask == 1])


@pytest.mark.parametrize("bad,message", [
    (dict(sparsity=1.0), "sparsity must be in \\[0, 1\\)"),
    (dict(sparsity=-0.1), "sparsity must be in \\[0, 1\\)"),
    (dict(scope="local"), "Unknown scope 'local'"),
    (dict(scope="global", layer_density="erk"), "needs scope='layerwise'"),
    (dict(layer_density="lamp", scope="layerwise"), "Unknown layer_density 'lamp'"),
    (dict(min_density=2.0), "min_density must be in \\[0, 1\\]"),
])
def test_bad_mask_options(bad, message):
    kwargs = {"sparsity": 0.5, **bad}
    with pytest.raises(ValueError, match=message):
        pruning.masks_from_scores(random_scores(), **kwargs)
