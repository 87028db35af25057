"""TF-MOT adapter: PQAT in a legacy-Keras subprocess keeps the EPSD sparsity."""

import json
import os

import keras
import numpy as np
import pytest

from epsd_tf.export import tfmot_adapter

pytest.importorskip("tf_keras")
pytest.importorskip("tensorflow_model_optimization")


@pytest.mark.slow
def test_pqat_keeps_sparsity_and_accuracy(trained, data, tmp_path):
    model, masks = trained
    result = tfmot_adapter.run_pqat(model, str(tmp_path), data["train"], data["test"],
                                    epochs=1, batch_size=32, timeout_seconds=300)
    target = sum(float((m == 0).sum()) for m in masks.values()) / sum(m.size for m in masks.values())
    assert result["target_sparsity"] == pytest.approx(target)
    # Within 0.5 points through PQAT, measured in the int8 file itself.
    assert abs(result["tflite_weight_sparsity"] - target) <= 0.005
    assert result["tflite_sparse_tensors"] > 0
    assert result["tflite_accuracy"] >= result["float_accuracy"] - 0.05
    assert result["bytes"] == os.path.getsize(tmp_path / tfmot_adapter.PQAT_FILE)
    assert json.load(open(tmp_path / tfmot_adapter.PQAT_REPORT))["bytes"] == result["bytes"]
    assert sorted(os.listdir(tmp_path)) == sorted([tfmot_adapter.PQAT_REPORT, tfmot_adapter.PQAT_FILE])
    assert result["versions"]["tf_keras"] == "2.21.0"
    # The parent process still runs Keras 3.
    assert keras.__version__.startswith("3.")


@pytest.mark.slow
def test_worker_failure_reports_its_output(trained, data, tmp_path, monkeypatch):
    model, _ = trained
    real_spec = tfmot_adapter.architecture_spec

    def broken_spec(m):
        spec = real_spec(m)
        spec["layers"][1]["class_name"] = "NoSuchLayer"
        return spec

    monkeypatch.setattr(tfmot_adapter, "architecture_spec", broken_spec)
    with pytest.raises(RuntimeError, match=r"(?s)worker failed \(exit code 1\).*"
                                           r"tf_keras has no layer class 'NoSuchLayer'"):
        tfmot_adapter.run_pqat(model, str(tmp_path), data["train"], data["test"], epochs=0)
    assert os.listdir(tmp_path) == []


def test_bad_inputs_fail_before_the_worker(trained, data, tmp_path, monkeypatch):
    model, _ = trained

    class Scale(keras.layers.Layer):
        def call(self, x):
            return 2.0 * x

    inputs = keras.Input((4,))
    custom = keras.Model(inputs, keras.layers.Dense(2)(Scale()(inputs)))
    with pytest.raises(ValueError, match=r"only rebuild built-in Keras layers.*Scale"):
        tfmot_adapter.run_pqat(custom, str(tmp_path), data["train"], data["test"])
    (tmp_path / tfmot_adapter.PQAT_FILE).write_bytes(b"old")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        tfmot_adapter.run_pqat(model, str(tmp_path), data["train"], data["test"])
    with pytest.raises(ValueError, match="N >= 1 images"):
        tfmot_adapter.run_pqat(model, str(tmp_path / "x"), (np.zeros((0, 12, 12, 3)), np.zeros(0)),
                               data["test"])
    monkeypatch.setattr(tfmot_adapter.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="pip install --no-deps tf_keras==2.21.0"):
        tfmot_adapter.run_pqat(model, str(tmp_path), data["train"], data["test"])
