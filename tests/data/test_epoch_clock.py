"""EpochClock: an epoch's batches depend on (seed, epoch) only (issue 12, defect 6)."""

import numpy as np

from epsd_tf import data


def _splits():
    return data.load("synthetic", source="synthetic", batch_size=16, seed=0)


def _epoch(batches):
    """All (view-0 images, labels) of one iteration, as numpy."""
    images, labels = zip(*((x["image"].numpy(), y.numpy()) for x, y in batches))
    return np.concatenate(images), np.concatenate(labels)


def test_an_epochs_batches_do_not_depend_on_earlier_iterations():
    splits = _splits()
    clock_a, clock_b = data.EpochClock(), data.EpochClock()
    fresh = data.for_method(splits, "two_views", epoch=clock_a)
    used = data.for_method(splits, "two_views", epoch=clock_b)
    for _ in range(3):  # what Keras' fit does with a pipeline: iterate it, more than once
        _epoch(used)
    clock_a.on_epoch_begin(2)
    clock_b.on_epoch_begin(2)
    images_a, labels_a = _epoch(fresh)
    images_b, labels_b = _epoch(used)
    np.testing.assert_array_equal(labels_a, labels_b)
    np.testing.assert_array_equal(images_a, images_b)
    assert len(fresh) == len(used) == splits.info.num_train // 16


def test_epochs_differ_in_order_and_augmentation_and_cover_the_same_examples():
    splits = _splits()
    clock = data.EpochClock()
    batches = data.for_method(splits, "example_ids", epoch=clock)
    ids = []
    for epoch in (0, 1):
        clock.on_epoch_begin(epoch)
        ids.append(np.concatenate([x["example_id"].numpy() for x, _ in batches]))
    assert not np.array_equal(ids[0], ids[1])
    full = (splits.info.num_train // 16) * 16
    assert len(set(ids[0])) == len(set(ids[1])) == full  # no repeats within an epoch
    clock.on_epoch_begin(0)
    again = np.concatenate([x["example_id"].numpy() for x, _ in batches])
    np.testing.assert_array_equal(again, ids[0])
