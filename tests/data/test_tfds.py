"""The TFDS source, on `tfds.testing.mock_data` (TFDS cannot download here)."""

import pytest
import tensorflow_datasets as tfds

from epsd_tf import data
from epsd_tf.data import augment, tf_batches


def test_cifar10_mock_shapes_counts_and_known_stats():
    with tfds.testing.mock_data(num_examples=20):
        splits = data.load("cifar10", source="tfds", batch_size=4, eval_batch_size=5)
        info = splits.info
        assert info.source == "tfds" and info.num_classes == 10
        assert info.image_shape == (32, 32, 3)
        assert info.mean == (0.4914, 0.4822, 0.4465)
        # Mock data ignores slicing: every split yields num_examples examples.
        assert (info.num_train, info.num_validation, info.num_test) == (20, 20, 20)
        images, labels = next(iter(splits.train))
        assert images.shape == (4, 32, 32, 3) and images.dtype.name == "float32"
        assert labels.dtype.name == "int32"
        assert sum(1 for _ in splits.train) == 5
        assert [int(y.shape[0]) for _, y in splits.test] == [5] * 4
        ids = [int(e["example_id"]) for e in splits.train_examples.as_numpy_iterator()]
        assert ids == list(range(20))


def test_mnist_mock_without_validation():
    with tfds.testing.mock_data(num_examples=8):
        splits = data.load("mnist", source="tfds", batch_size=4, validation_fraction=0.0)
        assert splits.validation is None and splits.info.num_validation == 0
        assert splits.info.image_shape == (28, 28, 1)
        assert next(iter(splits.train))[0].shape == (4, 28, 28, 1)


def test_imagenet_mock_variable_sizes_resized_crop():
    # imagenet2012's labelled "validation" split is the test set; mock images
    # have random sizes, stored at 256 px and cropped to the 224 px input.
    with tfds.testing.mock_data(num_examples=4):
        splits = data.load("imagenet2012", source="tfds", batch_size=2,
                           validation_fraction=0.0)
        assert splits.info.image_shape == (224, 224, 3)
        assert splits.train_examples.element_spec["image"].shape == (256, 256, 3)
        assert splits.preprocess.augmentation.kind == "resized_crop"
        assert next(iter(splits.train))[0].shape == (2, 224, 224, 3)
        assert next(iter(splits.test))[0].shape == (2, 224, 224, 3)


def test_imagenet_resized_64_pad_crop_and_image_size():
    with tfds.testing.mock_data(num_examples=4):
        splits = data.load("imagenet_resized/64x64", source="tfds", batch_size=2,
                           validation_fraction=0.0)
        assert splits.preprocess.augmentation == augment.Augmentation(
            "pad_crop", 8, True)
        assert next(iter(splits.train))[0].shape == (2, 64, 64, 3)
        small = data.load("imagenet_resized/64x64", source="tfds", batch_size=2,
                          image_size=32, validation_fraction=0.0)
        assert small.info.image_shape == (32, 32, 3)
        assert next(iter(small.test))[0].shape == (2, 32, 32, 3)


def test_tfds_streamed_class_pairs_share_label_and_differ():
    with tfds.testing.mock_data(num_examples=64):
        splits = data.load("cifar10", source="tfds", batch_size=8, validation_fraction=0.0)
        assert not splits.in_memory
        pairs = [e for e, _ in tf_batches.pair_examples(splits).as_numpy_iterator()]
        assert len(pairs) >= 64 - 10  # at most one unpaired example per class
        for pair in pairs:
            assert pair["pair_label"] == pair["label"]
            assert pair["pair_id"] != pair["example_id"]
        features, labels = next(iter(data.for_method(splits, "class_pairs")))
        assert features["pair_image"].shape == (8, 32, 32, 3)


def test_tfds_missing_data_names_dir_and_how_to_prepare(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"not found in '{tmp_path}.*tfds build cifar10"):
        data.load("cifar10", source="tfds", data_dir=str(tmp_path))
