"""Bad input fails early and clearly, and never leaves partial files behind."""

import json
import os

import keras
import numpy as np
import pytest

from epsd_tf import export
from epsd_tf.export import files, pipeline


def _leftovers(directory) -> list:
    """Temporary files/dirs the atomic writers would leave behind on a bug."""
    return [n for n in os.listdir(directory) if n.startswith(".")]


def test_int8_without_representative_data(trained, data, tmp_path):
    model, _ = trained
    with pytest.raises(ValueError, match=r"\['int8'\] need representative_data"):
        export.export_all(model, str(tmp_path), formats=("keras", "int8"),
                          eval_batch=data["test"], latency_runs=0)
    assert os.listdir(tmp_path) == []


def test_missing_eval_batch_and_unknown_format(trained, tmp_path):
    model, _ = trained
    with pytest.raises(ValueError, match="needs eval_batch"):
        export.export_all(model, str(tmp_path), formats=("float32",))
    with pytest.raises(ValueError, match=r"Unknown or empty export formats \['tflite'\]; valid"):
        export.export_all(model, str(tmp_path), formats=("tflite",), eval_batch=np.zeros((1, 12, 12, 3)))
    with pytest.raises(ValueError, match="2 labels"):
        export.export_all(model, str(tmp_path), formats=("float32",),
                          eval_batch=(np.zeros((3, 12, 12, 3)), np.zeros(2)))
    assert os.listdir(tmp_path) == []


def test_existing_file_without_overwrite(trained, data, tmp_path):
    model, _ = trained
    target = tmp_path / "model_float32.tflite"
    target.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="model_float32.tflite.*overwrite=True"):
        export.export_all(model, str(tmp_path), formats=("keras", "float32"),
                          eval_batch=data["test"], latency_runs=0)
    assert target.read_bytes() == b"precious"
    assert sorted(os.listdir(tmp_path)) == ["model_float32.tflite"]
    # With overwrite the file is replaced by a real TFLite flatbuffer.
    export.export_all(model, str(tmp_path), formats=("float32",), eval_batch=data["test"],
                      latency_runs=0, overwrite=True)
    assert target.read_bytes()[4:8] == b"TFL3"
    assert _leftovers(tmp_path) == []


def test_unwritable_workdir(trained, data, tmp_path):
    model, _ = trained
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(PermissionError, match="Cannot create export workdir"):
        export.export_all(model, str(blocker / "out"), formats=("keras",),
                          eval_batch=data["test"], latency_runs=0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        files.check_destination(str(tmp_path / "missing" / "x.tflite"), overwrite=False)


def test_tflite_conversion_failure_leaves_no_file(data, tmp_path):
    """erfinv has no TFLite builtin: conversion must fail loudly, write nothing."""
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.Lambda(lambda t: keras.ops.erfinv(0.5 * keras.ops.tanh(t)),
                            output_shape=lambda shape: shape)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4)(x))
    with pytest.raises(export.TFLiteConversionError, match="variant 'int8' failed"):
        export.export_all(model, str(tmp_path), formats=("int8",),
                          representative_data=data["train"][0], eval_batch=data["test"],
                          latency_runs=0, calibration_examples=8)
    assert os.listdir(tmp_path) == []


def test_parity_failure_is_loud_and_reported(trained, data, tmp_path, monkeypatch):
    model, _ = trained
    real_predict = pipeline.runtime.predict

    def broken_predict(path, images, **kwargs):
        return real_predict(path, images, **kwargs)[:, ::-1]  # permuted classes

    monkeypatch.setattr(pipeline.runtime, "predict", broken_predict)
    with pytest.raises(export.ParityError, match="Parity check failed for 'float32'"):
        export.export_all(model, str(tmp_path), formats=("keras", "float32"),
                          eval_batch=data["test"], latency_runs=0)
    report = json.load(open(tmp_path / "export_report.json"))
    assert report["artifacts"]["keras"]["parity"]["passed"] is True
    assert report["artifacts"]["float32"]["parity"]["passed"] is False


def test_atomic_writer_cleans_up_on_failure(tmp_path):
    target = tmp_path / "artifact.bin"
    with pytest.raises(RuntimeError, match="boom"):
        with files.atomic_path(str(target), overwrite=False) as temporary:
            open(temporary, "wb").write(b"half")
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    files.write_bytes(str(target), b"whole", overwrite=False)
    assert target.read_bytes() == b"whole" and _leftovers(tmp_path) == []


def test_eval_batch_from_dataset(trained, data, tmp_path):
    import tensorflow as tf

    model, _ = trained
    dataset = tf.data.Dataset.from_tensor_slices(data["test"]).batch(40)
    report = export.export_all(model, str(tmp_path), formats=("keras",),
                               eval_batch=dataset, latency_runs=0)
    assert report["eval_examples"] == 40 and "keras_accuracy" in report
