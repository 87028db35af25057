"""DataSplits pipelines: carve-out, normalisation, seeded augmentation, batching."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from epsd_tf import data
from epsd_tf.data import arrays, augment
from tests.data.helpers import decode_ids, id_images


def _epoch(dataset):
    return [(x.numpy(), y.numpy()) for x, y in dataset]


def test_validation_carve_out_is_deterministic_and_disjoint(tmp_path):
    path = str(tmp_path / "ids.npz")
    np.savez(path, x_train=id_images(200), y_train=np.arange(200) % 4,
             x_test=id_images(10), y_test=np.arange(10) % 4)
    first = data.load("ids", source="npz", path=path, validation_fraction=0.25,
                      augment=False, batch_size=10, seed=1)
    second = data.load("ids", source="npz", path=path, validation_fraction=0.25,
                       augment=False, batch_size=10, seed=2)
    assert (first.info.num_train, first.info.num_validation) == (150, 50)
    train_ids = first.train_arrays[0][:, 0, 0, 0].astype(int) - 1
    val_ids = np.concatenate([decode_ids(x, first.info) for x, _ in _epoch(first.validation)])
    assert len(set(train_ids)) == 150 and len(set(val_ids)) == 50
    assert set(train_ids).isdisjoint(val_ids)
    assert set(train_ids) | set(val_ids) == set(range(200))
    # Independent of the training seed and of the call.
    np.testing.assert_array_equal(first.train_arrays[0], second.train_arrays[0])
    with pytest.raises(ValueError, match=r"validation_fraction must be in \[0, 1\)"):
        arrays.carve_validation(np.zeros((4, 2, 2, 1)), np.zeros(4), 1.0)


def _two_class_npz(tmp_path):
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (50, 6, 6, 3), np.uint8)
    path = str(tmp_path / "d.npz")
    np.savez(path, x_train=x_train, y_train=np.arange(50) % 2,
             x_test=x_train[:10], y_test=np.arange(10) % 2)
    return path, x_train


def test_normalisation_statistics_computed_on_train(tmp_path):
    path, x_train = _two_class_npz(tmp_path)
    splits = data.load("d", source="npz", path=path, validation_fraction=0.0,
                       augment=False, batch_size=10, eval_batch_size=10)
    pixels = x_train / 255.0
    np.testing.assert_allclose(splits.info.mean, pixels.mean((0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(splits.info.std, pixels.std((0, 1, 2)), rtol=1e-6)
    test_images = next(iter(splits.test))[0].numpy()
    expected = (x_train[:10] / 255.0 - splits.info.mean) / splits.info.std
    np.testing.assert_allclose(test_images, expected, atol=1e-5)
    # Normalised training pixels have ~zero mean and unit std.
    train_images = np.concatenate([x for x, _ in _epoch(splits.train)])
    np.testing.assert_allclose(train_images.mean((0, 1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(train_images.std((0, 1, 2)), 1, atol=1e-4)


def test_known_dataset_names_use_fixed_statistics(tmp_path):
    # Known dataset names use the fixed statistics of METHOD.md's datasets.
    path, _ = _two_class_npz(tmp_path)
    known = data.load("cifar10", source="npz", path=path, validation_fraction=0.0,
                      batch_size=10, num_classes=10)
    assert known.info.mean == data.KNOWN_DATASETS["cifar10"].mean


def test_default_augmentations_follow_method_section_4():
    assert augment.default_augmentation((28, 28, 1)) == augment.Augmentation(
        "pad_crop", 2, False)
    assert augment.default_augmentation((32, 32, 3)) == augment.Augmentation(
        "pad_crop", 4, True)
    assert augment.default_augmentation((64, 64, 3)).padding == 8
    assert augment.default_augmentation((224, 224, 3)) == augment.Augmentation(
        "resized_crop", 0, True)
    assert augment.default_augmentation((32, 32, 3), augment=False).kind == "none"
    assert augment.default_augmentation((28, 28, 1), horizontal_flip=True).flip
    assert augment.stored_size(224) == 256 and augment.stored_size(32) == 32


def _synthetic(seed, **kwargs):
    return data.load("synthetic", num_examples=64, num_test=16, image_shape=(12, 12, 3),
                     validation_fraction=0.0, batch_size=16, seed=seed, **kwargs)


def test_augmentation_is_seeded_and_changes_between_epochs():
    first, second, other = _synthetic(3), _synthetic(3), _synthetic(4)
    epoch_1 = _epoch(first.train)
    assert [x.shape for x, _ in epoch_1] == [(16, 12, 12, 3)] * 4
    same = _epoch(second.train)
    for (x_a, y_a), (x_b, y_b) in zip(epoch_1, same):
        np.testing.assert_array_equal(x_a, x_b)
        np.testing.assert_array_equal(y_a, y_b)
    epoch_2 = _epoch(first.train)
    assert not np.array_equal(epoch_1[0][0], epoch_2[0][0])
    assert not np.array_equal(epoch_1[0][0], _epoch(other.train)[0][0])
    # The second epoch is reproducible too.
    np.testing.assert_array_equal(epoch_2[0][0], _epoch(second.train)[0][0])


def test_augmentation_changes_pixels_but_not_eval():
    splits = _synthetic(0)
    image = tf.constant(splits.train_arrays[0][0])
    eval_view = splits.preprocess(image, False).numpy()
    views = [splits.preprocess(image, True, seed=tf.constant([0, s], tf.int64)).numpy()
             for s in range(8)]
    assert all(v.shape == (12, 12, 3) for v in views)
    assert any(not np.array_equal(v, eval_view) for v in views)
    np.testing.assert_array_equal(
        views[1], splits.preprocess(image, True, seed=tf.constant([0, 1], tf.int64)).numpy())
    # Batched call: one independent augmentation per image.
    batch = splits.preprocess(tf.constant(splits.train_arrays[0][:5]), True)
    assert batch.shape == (5, 12, 12, 3)
    unaugmented = _synthetic(0, augment=False)
    assert unaugmented.preprocess.augmentation.kind == "none"
    np.testing.assert_array_equal(unaugmented.preprocess(image, True).numpy(), eval_view)


def test_resized_crop_for_large_images():
    splits = data.load("synthetic", num_examples=8, num_test=4, image_shape=(40, 50, 3),
                       image_size=128, validation_fraction=0.0, batch_size=4)
    assert splits.info.image_shape == (128, 128, 3)
    assert splits.train_arrays[0].shape == (8, 146, 146, 3)
    assert next(iter(splits.train))[0].shape == (4, 128, 128, 3)
    assert next(iter(splits.test))[0].shape == (4, 128, 128, 3)


def test_train_drops_remainder_eval_keeps_it():
    splits = data.load("synthetic", num_examples=70, num_test=30, validation_fraction=0.0,
                       batch_size=16, eval_batch_size=8)
    assert [len(y) for _, y in _epoch(splits.train)] == [16] * 4
    assert [len(y) for _, y in _epoch(splits.test)] == [8, 8, 8, 6]
    example = next(iter(splits.train_examples))
    assert example["image"].dtype == tf.uint8 and example["label"].dtype == tf.int32
    assert example["example_id"].dtype == tf.int64


def test_bad_sizes_raise_before_work():
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        data.load("synthetic", batch_size=0)
    with pytest.raises(ValueError, match="image_size must be >= 1"):
        data.load("synthetic", image_size=0)
    with pytest.raises(ValueError, match="validation_fraction must be in"):
        data.load("synthetic", validation_fraction=-0.1)


def test_each_example_gets_new_augmentation_each_epoch():
    splits = _synthetic(0)
    dataset = data.for_method(splits, "example_ids")

    def views_by_id():
        return {int(i): x for features, _ in dataset
                for i, x in zip(features["example_id"].numpy(), features["image"].numpy())}

    epoch_1, epoch_2 = views_by_id(), views_by_id()
    changed = [not np.array_equal(epoch_1[i], epoch_2[i]) for i in epoch_1]
    assert np.mean(changed) > 0.5


def test_max_train_examples_keeps_the_first_examples_only():
    full = data.load("synthetic", source="synthetic", batch_size=16, num_examples=200)
    small = data.load("synthetic", source="synthetic", batch_size=16, num_examples=200,
                      max_train_examples=64)
    assert small.info.num_train == 64
    assert small.info.num_validation == full.info.num_validation
    ids = [int(e["example_id"]) for e in small.train_examples.as_numpy_iterator()]
    assert ids == list(range(64))
    assert int(small.train.cardinality()) == 64 // 16
    first = next(small.train_examples.as_numpy_iterator())
    np.testing.assert_array_equal(first["image"],
                                  next(full.train_examples.as_numpy_iterator())["image"])
    with pytest.raises(ValueError, match="max_train_examples"):
        data.load("synthetic", source="synthetic", max_train_examples=0)


def test_data_splits_are_frozen_and_train_is_built_once():
    splits = data.load("synthetic", num_examples=32, num_test=8, batch_size=8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        splits.batch_size = 4
    assert splits.train is splits.train
    assert int(splits.train.cardinality()) == splits.info.num_train // 8
