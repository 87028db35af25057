"""`data.load(..., pipeline="numpy")`: the TF-free path behind the one `load`/`for_method` API.

Backend-neutral: runs in the TensorFlow suite and in the TF-free JAX suite
(where "auto" picks this path).
"""

import numpy as np
import pytest

from epsd_tf import backends, data
from epsd_tf.data.array_batches import EvalBatches, TrainBatches
from tests.data.helpers import decode_ids

pytestmark = pytest.mark.jax


def _load(path, **kwargs):
    kwargs = dict(dict(validation_fraction=0.0, batch_size=12, pipeline="numpy"), **kwargs)
    return data.load("ids", source="npz", path=path, **kwargs)


def test_load_picks_numpy_batches_with_the_contracts_shapes(id_npz):
    splits = _load(id_npz, validation_fraction=0.2, eval_batch_size=5)
    assert splits.pipeline == "numpy" and splits.in_memory
    assert isinstance(splits.train, TrainBatches) and isinstance(splits.test, EvalBatches)
    assert splits.info.num_train == 48 and splits.info.num_validation == 12
    images, labels = splits.train[0]
    assert images.shape == (12, 8, 8, 1) and images.dtype == np.float32
    assert labels.dtype == np.int32
    assert [len(y) for _, y in splits.test] == [5, 5, 2]
    x, y = data.batch_info.first_examples(splits.validation, 12)
    np.testing.assert_array_equal(decode_ids(x, splits.info) % 3, y)
    for kind in data.BATCH_KINDS:
        batches = data.for_method(splits, kind)
        features = batches[0][0]
        keys = sorted(features) if isinstance(features, dict) else ["image"]
        assert keys == sorted(("image",) + batches.feature_keys[1:]), kind
        assert data.batch_info.batch_size(batches) == 12
        assert data.batch_info.num_batches(batches) == 4


def test_same_seed_same_batches_other_seed_other_batches(id_npz):
    def first_epoch(seed):
        batches = data.for_method(_load(id_npz, seed=seed), "two_views")
        return [batches[i] for i in range(len(batches))]

    first, again, other = first_epoch(1), first_epoch(1), first_epoch(2)
    for (f, y), (g, z) in zip(first, again):
        np.testing.assert_array_equal(f["image"], g["image"])
        np.testing.assert_array_equal(f["image_view1"], g["image_view1"])
        np.testing.assert_array_equal(y, z)
    assert not np.array_equal(first[0][0]["image"], other[0][0]["image"])


def test_ids_cover_each_example_once_per_epoch(id_npz):
    splits = _load(id_npz)
    batches = data.for_method(splits, "example_ids", batch_size=10)
    orders = []
    for _ in range(2):
        ids = np.concatenate([f["example_id"] for f, _ in batches])
        assert sorted(ids.tolist()) == list(range(60))
        labels = np.concatenate([y for _, y in batches])
        np.testing.assert_array_equal(labels, ids % 3)
        orders.append(ids)
        batches.on_epoch_end()
    assert not np.array_equal(*orders)


def test_max_train_examples_and_eval_are_unaugmented(id_npz):
    splits = _load(id_npz, max_train_examples=24)
    assert splits.info.num_train == 24 and len(splits.train) == 2
    ids = np.concatenate([decode_ids(x, splits.info) for x, _ in splits.train])
    assert sorted(ids) == list(range(24))
    assert [int(e["example_id"]) for e in splits.train_examples] == list(range(24))
    images, _ = data.batch_info.first_examples(splits.test, 12)
    np.testing.assert_array_equal(decode_ids(images, splits.info), np.arange(12))


def test_the_same_preprocessing_on_both_pipelines(id_npz):
    if not backends.has_tensorflow():
        pytest.skip("the tf.data pipeline needs TensorFlow")
    numpy_splits = _load(id_npz)
    tf_splits = _load(id_npz, pipeline="tf")
    assert numpy_splits.info == tf_splits.info
    assert numpy_splits.preprocess.augmentation == tf_splits.preprocess.augmentation
    x_np, y_np = data.batch_info.first_examples(numpy_splits.test, 12)
    x_tf, y_tf = data.batch_info.first_examples(tf_splits.test, 12)
    np.testing.assert_allclose(x_np, x_tf, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(y_np, y_tf)


def test_bad_pipeline_and_workers(id_npz):
    with pytest.raises(ValueError, match="Unknown pipeline 'torch'"):
        _load(id_npz, pipeline="torch")
    with pytest.raises(ValueError, match="workers must be >= 1"):
        _load(id_npz, workers=0)


def test_tfds_needs_the_tf_pipeline():
    with pytest.raises(ValueError, match="comes from TFDS.*source='npz'"):
        data.load("cifar10", source="tfds", pipeline="numpy")


def test_keras_fit_reads_every_epoch_fresh_with_worker_threads(id_npz):
    import keras

    splits = _load(id_npz, workers=2)
    seen = []

    class Recorded(TrainBatches):
        def __getitem__(self, index):
            batch = super().__getitem__(index)
            seen.append((self.epoch, index, tuple(decode_ids(batch[0], splits.info))))
            return batch

    plain = data.for_method(splits, "plain")
    batches = Recorded(*splits.train_arrays, kind="plain", batch_size=12,
                       preprocess=plain.preprocess, seed=0, num_classes=3, workers=2)
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(batches, epochs=3, verbose=0, shuffle=False)
    # Keras may read a first batch to build the model (its own begin/end pair);
    # every epoch it trains on is a complete, fresh permutation.
    epochs = {}
    for epoch, index, ids in seen:
        epochs.setdefault(epoch, {})[index] = ids
    full = [e for e, got in epochs.items() if len(got) == len(batches)]
    assert len(full) >= 3
    orders = [sum((epochs[e][i] for i in range(len(batches))), ()) for e in full]
    assert all(sorted(order) == list(range(60)) for order in orders)
    assert len(set(orders)) == len(orders)


def test_an_epoch_clock_keys_the_batches_and_skip_gives_the_rest_of_an_epoch(id_npz):
    splits = _load(id_npz)
    clock, other = data.EpochClock(), data.EpochClock()
    keyed = data.for_method(splits, "two_views", epoch=clock)
    used = data.for_method(splits, "two_views", epoch=other)
    for _ in range(3):  # iterations and epoch ends of the batches do not move the clock
        list(used)
        used.on_epoch_end()
    clock.on_epoch_begin(2)
    other.on_epoch_begin(2)
    epoch2 = list(keyed)
    for (f, y), (g, z) in zip(epoch2, used):
        np.testing.assert_array_equal(f["image_view1"], g["image_view1"])
        np.testing.assert_array_equal(y, z)
    rest = keyed.skip(2)
    assert len(rest) == len(keyed) - 2 and data.batch_info.batch_size(rest) == 12
    for (f, y), (g, z) in zip(rest, epoch2[2:]):
        np.testing.assert_array_equal(f["image"], g["image"])
    clock.on_epoch_begin(3)
    assert not np.array_equal(keyed[0][0]["image"], epoch2[0][0]["image"])
    with pytest.raises(ValueError, match="skip count"):
        keyed.skip(len(keyed))
