"""TFLite inspection: sparse tensors, DENSIFY ops and the XNNPACK sparse verdict."""

import keras
import numpy as np
import pytest

from epsd_tf.export import tflite, tflite_inspect
from tests.export.helpers import prune_randomly


def _convert(model, tmp_path, variant, representative=None):
    saved = str(tmp_path / f"sm_{variant}")
    model.export(saved, format="tf_saved_model", verbose=False)
    return tflite.convert(saved, variant, representative)


def _mobilenet_like(middle_conv3x3: bool) -> keras.Model:
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.ZeroPadding2D(1)(inputs)           # [18, 18, 3]
    x = keras.layers.Conv2D(16, 3, strides=2)(x)          # stem, pad 1 each side
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.Conv2D(32, 1)(x)                     # expand
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    if middle_conv3x3:
        x = keras.layers.Conv2D(32, 3, padding="same")(x)  # ResNet-style 3x3
    x = keras.layers.Conv2D(16, 1)(x)                     # project
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(5)(x))


def test_mobilenet_shape_is_eligible(tmp_path):
    keras.utils.set_random_seed(0)
    model = _mobilenet_like(middle_conv3x3=False)
    prune_randomly(model, 0.9)
    result = tflite_inspect.inspect(_convert(model, tmp_path, "float32_sparse"))
    verdict = result["xnnpack_sparse"]
    assert result["densify_ops"] > 0 and result["sparse_tensors"] == result["densify_ops"]
    assert verdict["conditions"]["stem_3x3_stride2_3_channels"]
    assert verdict["conditions"]["one_by_one_zero_fraction"] == pytest.approx(0.9, abs=0.01)
    assert verdict["likely_sparse"] and len(verdict["eligible_layers"]) == 2
    assert result["weight_sparsity"] == pytest.approx(0.9, abs=0.01)


def test_3x3_conv_blocks_and_dense_file_cannot_engage(tmp_path):
    keras.utils.set_random_seed(0)
    model = _mobilenet_like(middle_conv3x3=True)
    prune_randomly(model, 0.9)
    sparse = tflite_inspect.inspect(_convert(model, tmp_path, "float32_sparse"))
    verdict = sparse["xnnpack_sparse"]
    assert not verdict["likely_sparse"]
    assert any("3x3 CONV_2D has no sparse kernel" in reason
               for _, reason in verdict["ineligible_layers"])
    dense = tflite_inspect.inspect(_convert(model, tmp_path, "float32"))
    assert dense["sparse_tensors"] == 0 and dense["densify_ops"] == 0
    assert "densify_ops_present" in dense["xnnpack_sparse"]["summary"]
    assert not dense["xnnpack_sparse"]["likely_sparse"]


def test_dense_model_has_no_zeros(tmp_path):
    keras.utils.set_random_seed(0)
    model = _mobilenet_like(middle_conv3x3=False)
    result = tflite_inspect.inspect(_convert(model, tmp_path, "float32_sparse"))
    assert result["sparse_tensors"] == 0 and result["weight_sparsity"] < 0.01


def test_unknown_variant_rejected():
    with pytest.raises(ValueError, match="Unknown TFLite variant 'int4'; valid"):
        tflite.convert("/nonexistent", "int4")
    with pytest.raises(ValueError, match="needs a representative dataset"):
        tflite.convert("/nonexistent", "int8_sparse")
    with pytest.raises(ValueError, match="yielded no examples"):
        list(tflite.representative_dataset(np.zeros((0, 4, 4, 3)))())
