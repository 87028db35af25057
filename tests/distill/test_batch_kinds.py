"""The one batch-kind table (`distill.batch_kinds`) and everything that reads it."""

import numpy as np
import pytest

from epsd_tf import analysis, data
from epsd_tf.distill import batch_kinds, methods
from tests.distill import helpers  # noqa: F401  (sets TF log level)


def test_data_keeps_the_tables_kinds_and_builds_exactly_their_feature_keys():
    # data/ may not import distill/, so it keeps the names; they must be the table's.
    assert data.BATCH_KINDS == tuple(batch_kinds.BATCH_KINDS) == methods.BATCH_KINDS
    splits = data.load("synthetic", source="synthetic", batch_size=4, num_examples=48,
                       num_test=16, image_shape=(8, 8, 1), num_classes=4)
    for kind in batch_kinds.BATCH_KINDS.values():
        features, labels = data.for_method(splits, kind.name).element_spec
        features = features if isinstance(features, dict) else {"image": features}
        assert sorted(features) == sorted(kind.feature_keys), kind.name
        assert features["image"].shape[0] == 4


@pytest.mark.parametrize("name", sorted(methods.METHODS))
def test_every_method_names_a_row_and_its_passes(name):
    method = methods.get(name)
    kind = batch_kinds.get(method.batch_kind)
    assert method.passes_per_step == kind.passes_per_step == analysis.passes_per_step(name)
    assert kind.feature_keys[0] == "image"
    expected = {"none": 1, "dlb": 2, "cskd": 2, "pskd": 1}[name]
    assert kind.passes_per_step == expected  # images through the network per step / B


def test_features_accepts_the_kinds_keys_and_names_what_is_missing():
    images = np.zeros((2, 4, 4, 1), "float32")
    assert set(batch_kinds.features(methods.NoDistillation(), images)) == {"image"}
    extra = {"image": images, "image_view1": images, "other": images}
    assert set(batch_kinds.features(methods.DLB(), extra)) == set(extra)
    with pytest.raises(ValueError, match=r"Method 'cskd' needs batches of"):
        batch_kinds.features(methods.CSKD(), images)
    with pytest.raises(ValueError, match=r"missing \['example_id'\]"):
        batch_kinds.features(methods.PSKD(), {"image": images})
    with pytest.raises(ValueError, match="Unknown batch kind 'pairs'; valid kinds"):
        batch_kinds.get("pairs")
