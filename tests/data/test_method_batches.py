"""for_method: the batch shape of every self-distillation method kind."""

import collections

import numpy as np
import pytest

from epsd_tf import data
from epsd_tf.data import tf_batches
from epsd_tf.distill import methods
from tests.data.helpers import decode_ids, id_images


@pytest.fixture
def id_splits(id_npz):
    # 60 constant images with value id + 1, labels id % 3, all used for training.
    return data.load("ids", source="npz", path=id_npz, validation_fraction=0.0,
                     batch_size=12)


def test_plain_is_the_train_pipeline_shape(id_splits):
    batches = list(data.for_method(id_splits, methods.NoDistillation()))
    assert len(batches) == 5
    images, labels = batches[0]
    assert images.shape == (12, 8, 8, 1) and labels.shape == (12,)
    ids = np.concatenate([decode_ids(x.numpy(), id_splits.info) for x, _ in batches])
    labels = np.concatenate([y.numpy() for _, y in batches])
    assert sorted(ids) == list(range(60))  # each example once per epoch
    np.testing.assert_array_equal(labels, ids % 3)


def test_two_views_are_two_augmentations_of_one_example(id_splits):
    features, labels = next(iter(data.for_method(id_splits, methods.DLB())))
    view0, view1 = features["image"].numpy(), features["image_view1"].numpy()
    assert view0.shape == view1.shape == (12, 8, 8, 1)
    ids = decode_ids(view0, id_splits.info)
    np.testing.assert_array_equal(ids, decode_ids(view1, id_splits.info))
    np.testing.assert_array_equal(labels.numpy(), ids % 3)
    # Independent crops: the views differ for some examples of the batch.
    assert sum(not np.array_equal(a, b) for a, b in zip(view0, view1)) >= 6


def test_class_pairs_share_label_and_differ_in_example(id_splits):
    pair_ids = collections.defaultdict(set)
    for features, labels in data.for_method(id_splits, methods.CSKD(), batch_size=10):
        ids = decode_ids(features["image"].numpy(), id_splits.info)
        partners = decode_ids(features["pair_image"].numpy(), id_splits.info)
        np.testing.assert_array_equal(partners % 3, labels.numpy())
        np.testing.assert_array_equal(ids % 3, labels.numpy())
        assert np.all(partners != ids)
        for own, partner in zip(ids, partners):
            pair_ids[own].add(partner)
    assert len(pair_ids) == 60


def test_class_pair_partners_are_random_across_epochs(id_splits):
    partners = collections.defaultdict(set)
    dataset = tf_batches.pair_examples(id_splits, seed=0)
    for _ in range(4):
        for example, _ in dataset.as_numpy_iterator():
            partners[int(example["example_id"])].add(int(example["pair_id"]))
    # 19 possible partners per example: 4 epochs rarely repeat all of them.
    assert np.mean([len(p) for p in partners.values()]) > 3


def test_streamed_window_pairing_covers_the_epoch(id_splits):
    window = tf_batches.pair_window(id_splits)
    assert 2 <= window <= tf_batches.MAX_PAIR_WINDOW
    pairs = [e for e, _ in tf_batches.pair_examples(
        id_splits, seed=1, streamed=True).as_numpy_iterator()]
    anchors = [int(p["example_id"]) for p in pairs]
    assert len(set(anchors)) == len(anchors) >= 60 - 3  # <= 1 unpaired per class
    for pair in pairs:
        assert pair["pair_label"] == pair["label"] == pair["example_id"] % 3
        assert pair["pair_id"] != pair["example_id"]
        assert pair["pair_image"][0, 0, 0] == pair["pair_id"] + 1


def test_example_ids_match_images(id_splits):
    seen = []
    for features, labels in data.for_method(id_splits, methods.PSKD(), seed=5):
        ids = features["example_id"].numpy()
        assert features["example_id"].dtype.name == "int64"
        np.testing.assert_array_equal(ids, decode_ids(features["image"].numpy(),
                                                      id_splits.info))
        seen.extend(ids)
    assert sorted(seen) == list(range(60))


def test_for_method_is_seeded(id_splits):
    first = next(iter(data.for_method(id_splits, "two_views", seed=2)))[0]["image"]
    again = next(iter(data.for_method(id_splits, "two_views", seed=2)))[0]["image"]
    other = next(iter(data.for_method(id_splits, "two_views", seed=3)))[0]["image"]
    np.testing.assert_array_equal(first.numpy(), again.numpy())
    assert not np.array_equal(first.numpy(), other.numpy())


def test_class_pairs_need_two_examples_per_class(tmp_path):
    path = str(tmp_path / "single.npz")
    labels = np.array([0, 0, 0, 1, 2, 2])
    np.savez(path, x_train=id_images(6), y_train=labels, x_test=id_images(3),
             y_test=np.arange(3))
    splits = data.load("single", source="npz", path=path, validation_fraction=0.0,
                       batch_size=2)
    with pytest.raises(ValueError, match=r"classes \[1\] have exactly 1"):
        data.for_method(splits, methods.CSKD())


def test_bad_method_and_batch_size(id_splits):
    with pytest.raises(ValueError, match="Cannot tell the batch kind of 'dlb'"):
        data.for_method(id_splits, "dlb")
    with pytest.raises(ValueError, match="batch_size must be in 1 .. num_train=60"):
        data.for_method(id_splits, methods.DLB(), batch_size=61)


def test_measure_throughput_counts_images(id_splits):
    rate = data.measure_throughput(data.for_method(id_splits, methods.DLB()), num_batches=8)
    assert rate > 0
    assert data.measure_throughput(id_splits, num_batches=2) > 0
    with pytest.raises(ValueError, match="num_batches must be >= 1"):
        data.measure_throughput(id_splits.train, num_batches=0)
