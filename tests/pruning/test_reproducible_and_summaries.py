"""Scoring batches that depend on the seed only (issue 12, defect 5); progress
of scoring rounds; TensorBoard pruning summaries."""

import glob

import keras
import numpy as np
import pytest
import tensorflow as tf

from epsd_tf import data, pruning
from epsd_tf.pruning import progress, summaries
from tests.pruning.helpers import NUM_CLASSES, batches, small_cnn, tiny_cnn


@pytest.fixture(scope="module")
def splits():
    return data.load("synthetic", source="synthetic", batch_size=16, num_examples=160,
                     num_test=32, image_shape=(8, 8, 3), num_classes=NUM_CLASSES)


def epsd_masks(splits, seed):
    pruned, _ = pruning.prune_at_init(tiny_cnn(), splits, 0.5, scorer="epsd", method="dlb",
                                      inner_steps=1, seed=seed)
    return pruning.get_masks(pruned)


def test_scoring_batches_depend_on_the_seed_only(splits):
    # A user's pipeline that has been iterated (and reshuffled) between the calls
    # must not change the scoring batches: given the splits, prune_at_init scores a
    # fresh seed-shuffled view.
    pipeline = data.for_method(splits, "two_views")
    first = epsd_masks(splits, seed=0)
    for _ in range(2):
        for _ in pipeline:
            pass
        for _ in splits.train:
            pass
    keras.utils.set_random_seed(123)  # nor on TensorFlow's global seed
    again = epsd_masks(splits, seed=0)
    other = epsd_masks(splits, seed=1)
    assert all(np.array_equal(first[n], again[n]) for n in first)
    assert any(not np.array_equal(first[n], other[n]) for n in first)


def test_a_raw_pipeline_warns_that_its_batches_follow_its_iteration(splits, monkeypatch):
    from epsd_tf.pruning import prune
    warnings = recorded(monkeypatch, prune, "warning")
    pruning.prune_at_init(tiny_cnn(), data.for_method(splits, "plain"), 0.5, scorer="snip")
    assert any("Pass the DataSplits" in message for message in warnings)
    warnings.clear()
    pruning.prune_at_init(tiny_cnn(), splits, 0.5, scorer="snip")
    assert not any("Pass the DataSplits" in message for message in warnings)

def test_data_free_scorers_accept_splits(splits):
    pruned, report = pruning.prune_at_init(tiny_cnn(), splits, 0.5, scorer="magnitude")
    assert report["totals"]["masked_sparsity"] == pytest.approx(0.5, abs=0.01)


def recorded(monkeypatch, module, level):
    """Messages `module` logs at `level` (absl handlers vary with test order)."""
    messages = []
    monkeypatch.setattr(module.logging, level,
                        lambda message, *args: messages.append(message % args))
    return messages


def test_rounds_log_one_line_each_without_a_terminal(monkeypatch):
    messages = recorded(monkeypatch, progress, "info")
    bar = progress.RoundProgress(3, "Scoring test", tty=False)
    assert bar.bar is None
    for done in (1, 2, 3):
        bar.update(done, 0.1 * done)
    lines = [m for m in messages if "Scoring test: round" in m]
    assert len(lines) == 3 and "round 3/3" in lines[-1]


def test_rounds_show_a_progress_bar_on_a_terminal(capsys):
    bar = progress.RoundProgress(4, "Scoring test", tty=True)
    for done in range(1, 5):
        bar.update(done, 0.5)
    assert "4/4" in capsys.readouterr().out


def read_events(logdir):
    files = glob.glob(f"{logdir}/events.out.tfevents*")
    assert files, f"no event file in {logdir}"
    values = {}
    for path in files:
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                values[value.tag] = value
    return values


def test_summaries_write_density_and_score_histograms(tmp_path, model):
    _, report = pruning.prune_at_init(model, batches(count=1), 0.7, scorer="snip",
                                      score_stability=True)
    assert summaries.write_summaries(str(tmp_path), report)
    values = read_events(str(tmp_path))
    names = [row["name"] for row in report["layers"]]
    for row in report["layers"]:
        density = values[f"pruning/density/{row['name']}"]
        assert tf.make_ndarray(density.tensor) == pytest.approx(1 - row["sparsity"])
        histogram = values[f"pruning/scores/{row['name']}"]
        assert histogram.metadata.plugin_data.plugin_name == "histograms"
        buckets = tf.make_ndarray(histogram.tensor)
        assert buckets.shape == (30, 3) and buckets[:, 2].sum() == row["parameters"]
    assert {"pruning/sparsity/masked_pool", "pruning/sparsity/model",
            "pruning/kept_overlap/global"} <= set(values)
    assert len(values) == 2 * len(names) + 3 + len(names)


def test_summaries_without_tensorflow_log_a_notice_and_write_nothing(tmp_path, monkeypatch):
    def no_tensorflow(*args):
        raise ImportError("No module named 'tensorflow'")
    monkeypatch.setattr(summaries, "_tf_writer", no_tensorflow)
    _, report = pruning.prune_at_init(small_cnn(), None, 0.5, scorer="magnitude")
    warnings = recorded(monkeypatch, summaries, "warning")
    assert summaries.write_summaries(str(tmp_path), report) is False
    assert not list(tmp_path.iterdir())
    assert len(warnings) == 1 and "summaries skipped" in warnings[0]
