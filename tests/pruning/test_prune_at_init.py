"""prune_at_init end to end: exact sparsity, m ⊙ θ_init, report, bad inputs."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from epsd_tf import pruning
from tests.pruning.helpers import batches, images, small_cnn


def pool_kept(report):
    return report["totals"]["masked_kept"], report["totals"]["masked_parameters"]


@pytest.mark.parametrize("scope,rounds", [("global", 1), ("layerwise", 1), ("global", 3),
                                          ("layerwise", 3)])
def test_sparsity_is_exact_one_shot_and_iterative(model, scope, rounds):
    pruned, report = pruning.prune_at_init(model, batches(count=1), 0.9, scorer="snip",
                                           scope=scope, rounds=rounds, min_density=0.01)
    kept, total = pool_kept(report)
    assert abs(kept - 0.1 * total) <= 0.5
    assert kept == sum(int(m.sum()) for m in pruning.get_masks(pruned).values())


def test_pruned_model_is_mask_times_theta_init_and_original_untouched(tiny, tmp_path):
    original = [v.numpy().copy() for v in tiny.weights]
    data = batches("two_views", count=4)
    pruned, report = pruning.prune_at_init(tiny, data, 0.5, scorer="epsd", method="dlb",
                                           inner_steps=1, rounds=2)
    for old, new in zip(original, [v.numpy() for v in tiny.weights]):
        np.testing.assert_array_equal(old, new)
    masks = pruning.get_masks(pruned)
    init = pruning.get_prunable_weights(tiny)
    for name, kernel in pruning.get_prunable_weights(pruned).items():
        np.testing.assert_array_equal(kernel.numpy(), init[name].numpy() * masks[name])
    # Every non-prunable variable (biases, BN gamma/beta and statistics) as initialised.
    stripped = pruning.strip_masks(pruned)
    for layer in tiny.layers:
        if layer.weights and not pruning.wrapper.is_prunable_layer(layer):
            for a, b in zip(layer.get_weights(), stripped.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(a, b)
    assert report["settings"]["scorer"] == "epsd" and report["settings"]["method"] == "dlb"
    assert report["settings"]["rounds"] == 2
    path = pruning.write_report(report, str(tmp_path / "sub" / "report.json"))
    loaded = json.load(open(path))
    assert loaded["totals"] == report["totals"]
    assert [r["name"] for r in loaded["layers"]] == ["conv/kernel", "fc/kernel"]


def test_report_rows_totals_and_keep_dense(model):
    pruned, report = pruning.prune_at_init(model, batches(count=1), 0.8, scorer="snip",
                                           keep_dense=["conv1"], min_density=0.02)
    rows = {r["name"]: r for r in report["layers"]}
    assert not rows["conv1/kernel"]["masked"] and rows["conv1/kernel"]["sparsity"] == 0
    assert "conv1/kernel" not in pruning.get_masks(pruned)
    for row in rows.values():
        assert row["parameters"] == int(np.prod(row["shape"]))
        assert row["sparsity"] == pytest.approx(1 - row["kept"] / row["parameters"])
    assert rows["fc/kernel"]["score"]["max"] >= rows["fc/kernel"]["score"]["min"]
    totals = report["totals"]
    assert abs(totals["masked_kept"] - 0.2 * totals["masked_parameters"]) <= 0.5
    stripped = pruning.strip_masks(pruned)
    zeros = sum(int(np.sum(v.numpy() == 0))
                for v in pruning.get_prunable_weights(stripped).values())
    assert totals["model_pruned"] <= zeros
    assert totals["model_parameters"] == stripped.count_params()
    assert totals["model_sparsity"] == pytest.approx(totals["model_pruned"]
                                                     / stripped.count_params())
    table = pruning.format_report(report)
    assert "conv1/kernel" in table and "(dense)" in table and "whole model" in table


def test_grasp_masks_keep_the_lowest_scores(model):
    data = batches(count=1)
    pruned, _ = pruning.prune_at_init(model, data, 0.5, scorer="grasp", min_density=0.05)
    scores = pruning.score(model, data, "grasp")
    masks = pruning.get_masks(pruned)
    kept = np.concatenate([scores[k][masks[k] == 1] for k in masks])
    dropped = np.concatenate([scores[k][masks[k] == 0] for k in masks])
    # min_density floors aside, GraSP removes the highest scores.
    assert np.median(kept) < np.median(dropped)


def test_synflow_defaults_to_100_rounds_and_sanity_options(model):
    pruned, report = pruning.prune_at_init(model, None, 0.9, scorer="synflow",
                                           min_density=0.01)
    assert report["settings"]["rounds"] == 100
    kept, total = pool_kept(report)
    assert abs(kept - 0.1 * total) <= 0.5
    plain, _ = pruning.prune_at_init(model, None, 0.7, scorer="magnitude")
    shuffled, _ = pruning.prune_at_init(model, None, 0.7, scorer="magnitude", sanity="shuffle")
    inverted, _ = pruning.prune_at_init(model, None, 0.7, scorer="magnitude", sanity="invert")
    a, b, c = (pruning.get_masks(m) for m in (plain, shuffled, inverted))
    for name in a:
        assert a[name].sum() == b[name].sum() and not np.array_equal(a[name], b[name])
    assert sum(c[n].sum() for n in c) == sum(a[n].sum() for n in a)
    kernels = pruning.get_prunable_weights(model)
    kept_plain = np.concatenate([np.abs(kernels[n].numpy())[a[n] == 1] for n in a])
    kept_inverted = np.concatenate([np.abs(kernels[n].numpy())[c[n] == 1] for n in c])
    assert kept_inverted.max() <= kept_plain.min()


def test_pruned_model_trains_with_zeros_kept(tiny):
    pruned, _ = pruning.prune_at_init(tiny, batches(count=4), 0.8, scorer="prospr",
                                      inner_steps=1, first_order=True, min_density=0.05)
    masks = pruning.get_masks(pruned)
    pruned.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=5e-4),
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    dataset = tf.data.Dataset.from_tensor_slices((images(16), np.arange(16) % 5)).batch(8)
    pruned.fit(dataset, epochs=1, verbose=0)
    for name, kernel in pruning.get_prunable_weights(pruned).items():
        assert np.all(kernel.numpy()[masks[name] == 0] == 0)


def test_accepts_a_tf_data_dataset_of_dict_batches(tiny):
    x = {"image": images(16), "pair_image": images(16, seed=7)}
    dataset = tf.data.Dataset.from_tensor_slices((x, np.arange(16) % 5)).batch(8)
    pruned, report = pruning.prune_at_init(tiny, dataset, 0.5, scorer="epsd",
                                           method="cskd", inner_steps=1)
    assert pruning.has_masks(pruned)


@pytest.mark.parametrize("kwargs,message", [
    (dict(sparsity=1.0), "sparsity must be in \\[0, 1\\)"),
    (dict(sparsity=1.5), "sparsity must be in \\[0, 1\\)"),
    (dict(scorer="lottery"), "Unknown scorer 'lottery'; valid scorers"),
    (dict(keep_dense=["conv9"]), "keep_dense names \\['conv9'\\] match no prunable layer"),
    (dict(scorer="epsd", method="dlb"), "needs 4 batch\\(es\\) but the dataset yielded only 2"),
    (dict(scorer="snip", num_batches=3), "needs 3 batch\\(es\\) but the dataset yielded only 2"),
    (dict(scorer="epsd", method="cskd", inner_steps=1), "Method 'cskd' needs batches of"),
    (dict(sanity="flip"), "Unknown sanity transform 'flip'"),
    (dict(method="kd"), "Unknown self-distillation method 'kd'"),
    (dict(rounds=0), "rounds must be an integer >= 1"),
    (dict(keep_dense=["conv1", "conv2", "sep", "fc"]), "nothing left to prune"),
])
def test_bad_inputs_fail_before_scoring(model, kwargs, message):
    kwargs = {"sparsity": 0.5, "scorer": "snip", **kwargs}
    with pytest.raises(ValueError, match=message):
        pruning.prune_at_init(model, batches(count=2), **kwargs)


def test_bad_models():
    x = keras.Input((4,))
    with pytest.raises(ValueError, match="has no prunable weights"):
        pruning.prune_at_init(keras.Model(x, keras.layers.ReLU()(x)), None, 0.5, "magnitude")
    with pytest.raises(ValueError, match="is not built"):
        pruning.prune_at_init(keras.Sequential([keras.layers.Dense(2)]), None, 0.5, "magnitude")
    with pytest.raises(ValueError, match="already has masks"):
        pruning.prune_at_init(pruning.wrap(small_cnn()), None, 0.5, "magnitude")
