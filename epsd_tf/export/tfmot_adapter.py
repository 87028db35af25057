"""TF-MOT adapter (parent side): pruning-preserving QAT to an int8 TFLite file.

TF-MOT 0.8 only works on legacy `tf_keras`, and setting `TF_USE_LEGACY_KERAS=1`
flips `tf.keras` for a whole process. So the trained EPSD network (Chen et al.,
AAAI 2024) is handed to a separate process, `python -m
epsd_tf.export.tfmot_worker`, as plain files:

    spec.json    architecture (the Functional config, sanitised for tf_keras),
                 hyperparameters and output paths;
    weights.npz  `"{layer}/{i}"` -> the i-th array of `layer.get_weights()`;
    masks.npz    `"{layer}"` -> 0/1 mask of that layer's prunable kernel;
    data.npz     `x_train, y_train, x_test, y_test` subsets written here.

The worker rebuilds the network with `tf_keras` layers, holds the masks in
TF-MOT `PruneLowMagnitude` wrappers (schedule frozen), strips them and runs
pruning-preserving quantisation-aware training (Default8BitPrunePreserve-
QuantizeScheme, Pietrzak et al. / TF-MOT "collaborative optimisation"), then
converts to an int8 TFLite file and writes `result.json`.

Extra requirements (not needed by the rest of epsd_tf), installed with
`--no-deps` (tf_keras requires the full `tensorflow` build and TF-MOT pins
numpy 1.x; both work with tensorflow-cpu 2.21 and numpy 2):
`pip install --no-deps tf_keras==2.21.0 tensorflow-model-optimization==0.8.0`.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import deque
from typing import Optional

import keras
import numpy as np
from absl import logging

from epsd_tf import files as floor
from epsd_tf.export import files, keras_export

PQAT_FILE = "model_pqat_int8.tflite"
PQAT_REPORT = "pqat_report.json"
_DROPPED_KEYS = ("kernel_initializer", "bias_initializer", "depthwise_initializer",
                 "pointwise_initializer", "beta_initializer", "gamma_initializer",
                 "moving_mean_initializer", "moving_variance_initializer")


def check_requirements() -> None:
    """Raises `ImportError` naming the pip command if TF-MOT pieces are missing."""
    missing = [name for name in ("tf_keras", "tensorflow_model_optimization")
               if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(
            f"The TF-MOT adapter needs {missing}: pip install --no-deps "
            "tf_keras==2.21.0 tensorflow-model-optimization==0.8.0 dm-tree "
            "(--no-deps keeps tensorflow-cpu and numpy 2; see epsd_tf/export/README.md).")


def preflight(directory: str) -> None:
    """What `run` checks before training when PQAT follows it: TF-MOT is importable."""
    del directory  # run checks that it is writable
    check_requirements()


def architecture_spec(model: keras.Model) -> dict:
    """The Functional config of a stripped model, rebuildable with tf_keras.

    Initialisers are dropped (the trained weights are loaded afterwards) and
    dtype policies become their names. Only built-in Keras layers can be
    rebuilt in tf_keras.

    Raises:
        ValueError: the model is not Functional, nests models, or uses layers
            that are not built-in Keras layers (named in the message).
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "_nodes_by_depth"):
        raise ValueError("The TF-MOT adapter needs a Functional keras.Model; got "
                         f"{type(model).__name__}.")
    custom = [f"{layer.name} ({type(layer).__name__})" for layer in model.layers
              if isinstance(layer, keras.Model)
              or not type(layer).__module__.startswith("keras.")]
    if custom:
        raise ValueError("The TF-MOT adapter can only rebuild built-in Keras layers in "
                         f"tf_keras; unsupported: {custom}.")
    config = model.get_config()
    for layer in config["layers"]:
        layer_config = layer["config"]
        for key in _DROPPED_KEYS:
            layer_config.pop(key, None)
        if isinstance(layer_config.get("dtype"), dict):
            layer_config["dtype"] = layer_config["dtype"]["config"]["name"]
    return config


def _weights_and_masks(model: keras.Model) -> tuple:
    """`({"layer/i": array}, {"layer": 0/1 mask of its prunable kernel})`.

    The masks are the nonzero pattern of the stripped kernels: the pruning
    wrapper keeps stored kernels exactly zero where the mask is zero.
    """
    from epsd_tf.pruning import get_prunable_weights

    weights = {f"{layer.name}/{i}": value for layer in model.layers
               for i, value in enumerate(layer.get_weights())}
    masks = {}
    for name, variable in get_prunable_weights(model).items():
        layer_name = name.split("/")[0]
        masks[layer_name] = (keras.ops.convert_to_numpy(variable) != 0).astype(np.float32)
    return weights, masks


def _take(data, max_examples: int, name: str) -> tuple:
    """`(images, labels)` arrays from arrays or a batched (images, labels) dataset."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and not hasattr(data[0], "element_spec"):
        images, labels = np.asarray(data[0], np.float32), np.asarray(data[1])
    else:
        chunks, count = [], 0
        for images, labels in data:
            chunks.append((np.asarray(images, np.float32), np.asarray(labels)))
            count += len(chunks[-1][0])
            if count >= max_examples:
                break
        if not chunks:
            raise ValueError(f"{name} yielded no examples.")
        images = np.concatenate([c[0] for c in chunks])
        labels = np.concatenate([c[1] for c in chunks])
    if len(images) == 0 or len(images) != len(labels):
        raise ValueError(f"{name} must hold N >= 1 images and N labels; got "
                         f"{len(images)} images, {len(labels)} labels.")
    return images[:max_examples], labels[:max_examples].reshape(-1).astype(np.int32)


def run_pqat(model: keras.Model, workdir: str, train_data, test_data, *,
             epochs: int = 1, batch_size: int = 64, learning_rate: float = 1e-4,
             max_train_examples: int = 10000, max_test_examples: int = 10000,
             sparse_tflite: bool = True, max_sparsity_drift: float = 0.005,
             overwrite: bool = False, timeout_seconds: Optional[float] = None) -> dict:
    """Fine-tunes a trained sparse model with TF-MOT PQAT and writes int8 TFLite.

    Args:
        model: trained Keras 3 Functional model (masks are stripped first).
        workdir: receives `model_pqat_int8.tflite` and `pqat_report.json`.
        train_data: `(images, labels)` arrays or a batched tf.data pipeline;
            at most `max_train_examples` are used for QAT.
        test_data: the same for the accuracy comparison.
        epochs, batch_size, learning_rate: QAT fine-tuning (Adam).
        sparse_tflite: also apply `EXPERIMENTAL_SPARSITY` to the int8 file.
        max_sparsity_drift: largest allowed |sparsity(int8 file) - sparsity of
            the masks| (0.005 = 0.5 points); larger raises `RuntimeError`.
        overwrite: replace existing outputs.
        timeout_seconds: kill the worker after this long.

    Returns:
        The worker's result (accuracies of the float model, the QAT model and
        the int8 TFLite file on `test_data`; target and achieved sparsity;
        file size; library versions), also written to `pqat_report.json`.

    Raises:
        ImportError: tf_keras / TF-MOT not installed.
        ValueError, FileExistsError, PermissionError: bad input, before work.
        RuntimeError: the worker failed (with the tail of its output), or the
            sparsity drifted beyond `max_sparsity_drift`.
    """
    check_requirements()
    if epochs < 0 or batch_size < 1 or learning_rate <= 0:
        raise ValueError(f"Need epochs >= 0, batch_size >= 1, learning_rate > 0; got "
                         f"{epochs}, {batch_size}, {learning_rate}.")
    model, _ = keras_export.strip_if_masked(model)
    spec = architecture_spec(model)
    files.prepare_workdir(workdir)
    tflite_path = os.path.join(workdir, PQAT_FILE)
    report_path = os.path.join(workdir, PQAT_REPORT)
    for path in (tflite_path, report_path):
        files.check_destination(path, overwrite)
    x_train, y_train = _take(train_data, max_train_examples, "train_data")
    x_test, y_test = _take(test_data, max_test_examples, "test_data")

    job = tempfile.mkdtemp(prefix=".tfmot_job.", dir=workdir)
    try:
        weights, masks = _weights_and_masks(model)
        np.savez(os.path.join(job, "weights.npz"), **weights)
        np.savez(os.path.join(job, "masks.npz"), **masks)
        np.savez(os.path.join(job, "data.npz"), x_train=x_train, y_train=y_train,
                 x_test=x_test, y_test=y_test)
        job_spec = {"architecture": spec, "epochs": epochs, "batch_size": batch_size,
                    "learning_rate": learning_rate, "sparse_tflite": sparse_tflite,
                    "from_logits": True, "job_dir": job,
                    "tflite_path": os.path.join(job, PQAT_FILE),
                    "result_path": os.path.join(job, "result.json")}
        floor.write_json(os.path.join(job, "spec.json"), job_spec)
        _run_worker(os.path.join(job, "spec.json"), timeout_seconds)
        with open(job_spec["result_path"]) as handle:
            result = json.load(handle)
        drift = abs(result["tflite_weight_sparsity"] - result["target_sparsity"])
        result["sparsity_drift"] = drift
        if drift > max_sparsity_drift:
            raise RuntimeError(
                f"PQAT changed sparsity by {drift:.4f} (target "
                f"{result['target_sparsity']:.4f}, int8 file "
                f"{result['tflite_weight_sparsity']:.4f}) > allowed {max_sparsity_drift}.")
        files.check_destination(tflite_path, overwrite)
        if os.path.exists(tflite_path):
            os.remove(tflite_path)
        os.replace(job_spec["tflite_path"], tflite_path)
        result["tflite_path"] = tflite_path
        result["bytes"] = os.path.getsize(tflite_path)
        files.write_text(report_path, json.dumps(result, indent=2), overwrite)
    finally:
        shutil.rmtree(job, ignore_errors=True)
    logging.info("PQAT int8: float acc %.4f, QAT acc %.4f, int8 TFLite acc %.4f, "
                 "sparsity %.4f -> %.4f, %d bytes.", result["float_accuracy"],
                 result["qat_accuracy"], result["tflite_accuracy"],
                 result["target_sparsity"], result["tflite_weight_sparsity"], result["bytes"])
    return result


def _run_worker(spec_path: str, timeout_seconds: Optional[float]) -> None:
    """Runs the worker in its own process with legacy Keras; relays progress."""
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "epsd_tf.export.tfmot_worker", "--spec", spec_path]
    logging.info("Starting TF-MOT worker: %s", " ".join(command))
    tail = deque(maxlen=40)
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    # Reading the pipe blocks, so a timer enforces the timeout.
    timed_out = threading.Event()

    def kill():
        timed_out.set()
        process.kill()

    timer = threading.Timer(timeout_seconds, kill) if timeout_seconds else None
    if timer:
        timer.start()
    try:
        # The worker logs "PROGRESS ..." lines; everything else is kept for errors.
        for line in process.stdout:
            tail.append(line.rstrip())
            if "PROGRESS" in line:
                logging.info("TF-MOT worker: %s", line.split("PROGRESS", 1)[1].strip())
        code = process.wait()
    finally:
        if timer:
            timer.cancel()
    if timed_out.is_set():
        raise RuntimeError(f"TF-MOT worker timed out after {timeout_seconds} s. Last "
                           "output:\n" + "\n".join(tail))
    if code != 0:
        raise RuntimeError(f"TF-MOT worker failed (exit code {code}). Last output:\n"
                           + "\n".join(tail))


# `epsd_tf.train.experiment.run` calls a stage's `preflight` before training.
run_pqat.preflight = preflight
