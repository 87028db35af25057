"""The TF-free input path (array_batches.py, numpy_augment.py): tf.data's semantics.

Backend-neutral: runs in the TensorFlow suite and in the TF-free JAX suite.
"""

import collections

import numpy as np
import pytest

from epsd_tf.data import batch_info
from epsd_tf.data.array_batches import ArrayExamples, EvalBatches, TrainBatches
from epsd_tf.data.augmentation import Augmentation, default_augmentation
from epsd_tf.data.numpy_augment import NumpyPreprocessor, resize_and_center_crop
from tests.data.helpers import id_images

pytestmark = pytest.mark.jax

NUM, SIZE = 60, 8
MEAN, STD = (0.5,), (0.25,)


def _decode(images):
    """Example ids from the centre pixels of normalised id images."""
    centre = images[:, SIZE // 2, SIZE // 2, 0]
    return np.round(centre * STD[0] * 255.0 + MEAN[0] * 255.0).astype(np.int64) - 1


def _preprocess(augmentation=None):
    augmentation = augmentation or Augmentation("pad_crop", 2, True)
    return NumpyPreprocessor((SIZE, SIZE, 1), MEAN, STD, augmentation)


def _batches(kind, batch_size=12, seed=0, augmentation=None, images=None):
    images = id_images(NUM, SIZE) if images is None else images
    return TrainBatches(images, np.arange(NUM) % 3, kind=kind, batch_size=batch_size,
                        preprocess=_preprocess(augmentation), seed=seed, num_classes=3)


def _epoch(batches):
    return [batches[i] for i in range(len(batches))]


def _images(batch):
    features = batch[0]
    return features["image"] if isinstance(features, dict) else features


def test_each_example_once_per_epoch_with_drop_remainder():
    batches = _batches("example_ids", batch_size=8)  # 60 = 7 * 8 + 4 dropped
    assert len(batches) == 7 and batch_info.num_batches(batches) == 7
    assert batch_info.batch_size(batches) == 8
    for _ in range(2):
        epoch = _epoch(batches)
        ids = np.concatenate([f["example_id"] for f, _ in epoch])
        assert len(set(ids.tolist())) == 56  # no example twice in an epoch
        for features, labels in epoch:
            assert features["example_id"].dtype == np.int64 and labels.dtype == np.int32
            np.testing.assert_array_equal(_decode(features["image"]), features["example_id"])
            np.testing.assert_array_equal(labels, features["example_id"] % 3)
        batches.on_epoch_end()
    with pytest.raises(IndexError):
        batches[7]


def test_seeded_batches_repeat_and_epochs_differ():
    first, again, other = _batches("plain", seed=3), _batches("plain", seed=3), _batches(
        "plain", seed=4)
    epoch0 = _epoch(first)
    for (x, y), (x2, y2) in zip(epoch0, _epoch(again)):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    # A batch does not depend on the order in which (worker threads) build them.
    np.testing.assert_array_equal(first[3][0], epoch0[3][0])
    assert not np.array_equal(_images(other[0]), _images(epoch0[0]))
    first.on_epoch_end()
    epoch1 = _epoch(first)
    order0 = np.concatenate([_decode(x) for x, _ in epoch0])
    order1 = np.concatenate([_decode(x) for x, _ in epoch1])
    assert sorted(order0) == sorted(order1) and not np.array_equal(order0, order1)


def test_augmentation_changes_every_epoch():
    # Random images: a crop offset or flip changes the pixels.
    images = np.random.default_rng(0).integers(0, 256, (NUM, SIZE, SIZE, 1), np.uint8)
    batches = _batches("example_ids", images=images)
    views = {}
    for epoch in range(2):
        for features, _ in _epoch(batches):
            for i, view in zip(features["example_id"], features["image"]):
                views.setdefault(int(i), []).append(view)
        batches.on_epoch_end()
    changed = sum(not np.array_equal(a, b) for a, b in views.values())
    assert changed > 0.6 * len(views)


def test_two_views_are_two_augmentations_of_one_example():
    images = np.random.default_rng(1).integers(0, 256, (NUM, SIZE, SIZE, 1), np.uint8)
    ids = TrainBatches(id_images(NUM, SIZE), np.arange(NUM) % 3, kind="example_ids",
                       batch_size=12, preprocess=_preprocess(), seed=0, num_classes=3)
    features, labels = _batches("two_views", images=images)[0]
    assert set(features) == {"image", "image_view1"}
    view0, view1 = features["image"], features["image_view1"]
    assert view0.shape == view1.shape == (12, SIZE, SIZE, 1) and view0.dtype == np.float32
    differ = sum(not np.array_equal(a, b) for a, b in zip(view0, view1))
    assert differ >= 8
    # Same examples in both views (the order is the seed's, whatever the kind).
    same_order = ids[0][0]["example_id"]
    np.testing.assert_array_equal(labels, same_order % 3)
    id_views = _batches("two_views")[0][0]
    np.testing.assert_array_equal(_decode(id_views["image"]), same_order)
    np.testing.assert_array_equal(_decode(id_views["image_view1"]), same_order)


def test_class_pairs_share_the_label_and_differ_from_the_anchor():
    batches = _batches("class_pairs", batch_size=10)
    partners = collections.defaultdict(set)
    for _ in range(4):
        for features, labels in _epoch(batches):
            own, pair = _decode(features["image"]), _decode(features["pair_image"])
            np.testing.assert_array_equal(own % 3, labels)
            np.testing.assert_array_equal(pair % 3, labels)
            assert np.all(pair != own)
            for a, b in zip(own, pair):
                partners[a].add(b)
        batches.on_epoch_end()
    assert len(partners) == NUM
    # 19 possible partners per example: four epochs rarely repeat one.
    assert np.mean([len(p) for p in partners.values()]) > 3


def test_class_pairs_need_two_examples_per_class():
    with pytest.raises(ValueError, match="exactly 1"):
        TrainBatches(id_images(4, SIZE), np.array([0, 0, 1, 2]), kind="class_pairs",
                     batch_size=2, preprocess=_preprocess(), seed=0, num_classes=3)


def test_bad_kind_and_batch_size():
    with pytest.raises(ValueError, match="two_views"):
        _batches("pairs")
    with pytest.raises(ValueError, match="num_train=60"):
        _batches("plain", batch_size=61)


def test_eval_batches_keep_the_last_partial_batch_unaugmented():
    preprocess = _preprocess()
    images = id_images(NUM, SIZE)
    batches = EvalBatches(images, np.arange(NUM) % 3, batch_size=25, preprocess=preprocess)
    assert len(batches) == 3 and [len(y) for _, y in batches] == [25, 25, 10]
    x, y = batch_info.first_examples(batches, 30)
    assert x.shape == (30, SIZE, SIZE, 1) and y.shape == (30,)
    np.testing.assert_array_equal(_decode(x), np.arange(30))
    np.testing.assert_allclose(x[0], (1 / 255 - MEAN[0]) / STD[0], rtol=1e-6)


def test_pad_crop_views_are_shifted_windows_of_the_padded_image():
    rng = np.random.default_rng(2)
    image = rng.integers(1, 256, (1, SIZE, SIZE, 1), np.uint8)
    preprocess = NumpyPreprocessor((SIZE, SIZE, 1), (0.0,), (1 / 255,),
                                   Augmentation("pad_crop", 2, False))
    padded = np.pad(image[0, ..., 0], 2)
    windows = {padded[t:t + SIZE, s:s + SIZE].tobytes() for t in range(5) for s in range(5)}
    views = preprocess(np.repeat(image, 50, axis=0), True, seed=0)
    assert all(v[..., 0].astype(np.uint8).tobytes() in windows for v in views)
    assert len({v.tobytes() for v in views}) > 5


def test_flip_only_mirrors():
    image = np.random.default_rng(3).integers(0, 256, (40, SIZE, SIZE, 3), np.uint8)
    preprocess = NumpyPreprocessor((SIZE, SIZE, 3), (0.0,) * 3, (1 / 255,) * 3,
                                   Augmentation("pad_crop", 0, True))
    views = preprocess(image, True, seed=[1, 2]).astype(np.uint8)
    flipped = [np.array_equal(v, x[:, ::-1]) for v, x in zip(views, image)]
    kept = [np.array_equal(v, x) for v, x in zip(views, image)]
    assert all(f or k for f, k in zip(flipped, kept)) and 5 < sum(flipped) < 35


def test_resized_crop_and_centre_crop_sizes():
    stored = resize_and_center_crop(
        np.random.default_rng(4).integers(0, 256, (3, 150, 170, 3), np.uint8), 146)
    assert stored.shape == (3, 146, 146, 3) and stored.dtype == np.uint8
    augmentation = default_augmentation((128, 128, 3))
    assert augmentation.kind == "resized_crop"
    preprocess = NumpyPreprocessor((128, 128, 3), (0.5,) * 3, (0.25,) * 3, augmentation)
    assert preprocess(stored, True, seed=0).shape == (3, 128, 128, 3)
    assert preprocess(stored[0], False).shape == (128, 128, 3)


def test_array_examples_iterate_in_id_order():
    examples = ArrayExamples(id_images(5, SIZE), np.arange(5) % 3)
    got = list(examples.as_numpy_iterator())
    assert len(examples) == 5 and [int(e["example_id"]) for e in got] == list(range(5))
    assert [int(e["image"][0, 0, 0]) for e in got] == [1, 2, 3, 4, 5]
