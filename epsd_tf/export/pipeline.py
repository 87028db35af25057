"""`export_all`: from a trained (pruned) Keras model to checked edge artifacts.

The last step of the EPSD pipeline (Chen et al., AAAI 2024): the sparse
network trained with self-distillation is stripped of its masks, written as a
`.keras` archive, a SavedModel with a serving signature and TFLite variants,
every artifact is reloaded and checked against the Keras model, and a report
of size, sparsity and latency, naming the file to ship, is written next to
them with a `MODEL_CARD.md`.
"""

import os
import shutil
import tempfile
from typing import Optional, Sequence

import keras
import numpy as np
from absl import logging

from epsd_tf.export import (
    files,
    keras_export,
    model_card,
    parity,
    report,
    runtime,
    tflite,
    tflite_inspect,
)

KERAS_FORMATS = ("keras", "saved_model")
FORMATS = KERAS_FORMATS + tflite.VARIANTS
DEFAULT_FORMATS = FORMATS
FILE_NAMES = {"keras": "model.keras", "saved_model": "saved_model",
              **{variant: f"model_{variant}.tflite" for variant in tflite.VARIANTS}}


def _split_eval_batch(eval_batch) -> tuple:
    """`images`, `(images, labels)` or a dataset (first batch) -> numpy arrays."""
    if eval_batch is None:
        raise ValueError(
            "export_all needs eval_batch (held-out images, or (images, labels)) "
            "to check every artifact against the Keras model.")
    if hasattr(eval_batch, "element_spec"):  # a tf.data pipeline: its first batch
        eval_batch = next(iter(eval_batch))
    images, labels = (eval_batch if isinstance(eval_batch, (tuple, list))
                      else (eval_batch, None))
    images = np.asarray(images, np.float32)
    if images.ndim < 2 or images.shape[0] < 1:
        raise ValueError(f"eval_batch images must be [N, ...] with N >= 1, got "
                         f"shape {images.shape}.")
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if labels.shape[0] != images.shape[0]:
            raise ValueError(f"eval_batch has {images.shape[0]} images but "
                             f"{labels.shape[0]} labels.")
    return images, labels


def _validate(model, workdir: str, formats: Sequence[str], representative_data,
              overwrite: bool) -> list:
    if isinstance(formats, str):
        formats = (formats,)
    unknown = [name for name in formats if name not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"Unknown or empty export formats {unknown or list(formats)}; "
                         f"valid: {FORMATS}.")
    # Canonical order: the SavedModel is written before TFLite converts from it.
    formats = [name for name in FORMATS if name in formats]
    if not isinstance(model, keras.Model):
        raise ValueError(f"export_all expects a keras.Model, got {type(model).__name__}.")
    if len(model.inputs or []) != 1 or len(model.outputs or []) != 1:
        raise ValueError("export_all supports built single-input, single-output "
                         f"classifiers; {model.name!r} has "
                         f"{len(model.inputs or [])} inputs and "
                         f"{len(model.outputs or [])} outputs.")
    int8 = [name for name in formats if name in tflite.INT8_VARIANTS]
    if int8 and representative_data is None:
        raise ValueError(f"Formats {int8} need representative_data drawn from the "
                         "training pipeline (e.g. DataSplits.train) to calibrate int8.")
    files.prepare_workdir(workdir)
    reports = [report.REPORT_JSON, report.REPORT_TABLE, model_card.MODEL_CARD]
    for name in [FILE_NAMES[name] for name in formats] + reports:
        files.check_destination(os.path.join(workdir, name), overwrite)
    return formats


def export_all(model: keras.Model, workdir: str,
               formats: Sequence[str] = DEFAULT_FORMATS,
               representative_data=None, eval_batch=None, overwrite: bool = False,
               latency_runs: int = 50, latency_warmup: int = 5,
               calibration_examples: int = 128, about: Optional[dict] = None) -> dict:
    """Exports a trained model to every requested format and checks each one.

    Args:
        model: trained Keras model. If it still carries `epsd_tf.pruning`
            masks they are stripped first (see `keras_export` for the policy).
        workdir: directory receiving the artifacts and the report (created).
        formats: subset of `FORMATS`: "keras", "saved_model", "float32",
            "float32_sparse", "float16", "int8", "int8_sparse".
        representative_data: calibration data for int8 variants: the training
            pipeline (`tf.data` of `(images, labels)` batches) or an image array.
        eval_batch: held-out `images` or `(images, labels)` for the parity
            check (and accuracy when labels are given), or a batched tf.data
            pipeline such as `DataSplits.test` (its first batch). Required.
        overwrite: replace existing artifacts; otherwise an existing target
            raises `FileExistsError` before anything is written.
        latency_runs: timed LiteRT runs per setting (median reported); 0 skips
            latency measurement (tests).
        latency_warmup: untimed runs before timing.
        calibration_examples: examples drawn from `representative_data`.
        about: facts of the run that made the model, for `MODEL_CARD.md`
            (keys in `model_card.ABOUT_KEYS`: dataset, method, epochs,
            pruning, test, command, config); missing ones read "not recorded".

    Returns:
        The report dict (also written to `workdir/export_report.json`, a
        table to `workdir/export_report.txt` and `workdir/MODEL_CARD.md`).
        `report["ship"]` names the artifact to deploy: the smallest file that
        passes parity and loads under LiteRT's default delegate.

    Raises:
        ValueError, FileExistsError, FileNotFoundError, PermissionError: bad
            input, before anything is written.
        tflite.TFLiteConversionError: a TFLite variant failed to convert (no
            file is left for it).
        parity.ParityError: an artifact disagrees with the Keras model; the
            report (with the failure) is written first.
    """
    images, labels = _split_eval_batch(eval_batch)
    about = model_card.check_about(about)
    if latency_runs < 0:
        raise ValueError(f"latency_runs must be >= 0, got {latency_runs}.")
    formats = _validate(model, workdir, formats, representative_data, overwrite)
    representative = (tflite.representative_dataset(representative_data, calibration_examples)
                      if any(name in tflite.INT8_VARIANTS for name in formats) else None)

    model, stripped = keras_export.strip_if_masked(model)
    reference = keras.ops.convert_to_numpy(model(images, training=False))
    result = {"model": model.name, "masks_stripped": stripped,
              "architecture": {"input_shape": list(model.inputs[0].shape[1:]),
                               "outputs": int(model.outputs[0].shape[-1]),
                               "layers": len(model.layers),
                               "parameters": int(model.count_params())},
              "sparsity": keras_export.sparsity_stats(model),
              "eval_examples": int(images.shape[0]), "formats": formats,
              "artifacts": {}}
    if labels is not None:
        result["keras_accuracy"] = float(np.mean(np.argmax(reference, -1) == labels))

    scratch = None
    saved_model_dir = os.path.join(workdir, FILE_NAMES["saved_model"])
    failed = None
    try:
        if "saved_model" not in formats and any(n in tflite.VARIANTS for n in formats):
            # TFLite converts from a SavedModel; keep it out of the deliverables.
            scratch = tempfile.mkdtemp(prefix=".export_scratch.", dir=workdir)
            saved_model_dir = os.path.join(scratch, "saved_model")
            model.export(saved_model_dir, format="tf_saved_model", verbose=False)
        for name in formats:
            path = os.path.join(workdir, FILE_NAMES[name])
            entry = _export_one(model, name, path, saved_model_dir, representative,
                                overwrite)
            logits = _reload_predict(name, path, images, entry)
            minimum = (parity.INT8_MIN_AGREEMENT if name in tflite.INT8_VARIANTS
                       else parity.FLOAT_MIN_AGREEMENT)
            entry["parity"] = parity.compare(reference, logits, minimum)
            if labels is not None:
                entry["accuracy"] = float(np.mean(np.argmax(logits, -1) == labels))
            if name in tflite.VARIANTS and latency_runs > 0:
                entry["latency"] = runtime.latency_grid(path, latency_runs, latency_warmup)
            result["artifacts"][name] = entry
            if not entry["parity"]["passed"]:
                failed = name
                break
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    report.add_comparisons(result)
    result["ship"] = report.recommend(result)
    json_path, table_path = report.write(result, workdir, overwrite)
    card_path = model_card.write(result, workdir, about, overwrite)
    result["report_paths"] = [json_path, table_path, card_path]
    logging.info("Export report:\n%s", report.format_table(result))
    if failed is not None:
        parity.check(result["artifacts"][failed]["parity"], failed)
    return result


def _export_one(model, name: str, path: str, saved_model_dir: str, representative,
                overwrite: bool) -> dict:
    """Writes one artifact; returns its size entry (and TFLite inspection)."""
    if name == "keras":
        keras_export.save_keras(model, path, overwrite)
    elif name == "saved_model":
        keras_export.save_saved_model(model, path, overwrite)
    else:
        tflite.write(saved_model_dir, path, name,
                     representative if name in tflite.INT8_VARIANTS else None, overwrite)
    entry = {"path": path, "bytes": files.size_bytes(path),
             "gzip_bytes": files.gzipped_size_bytes(path)}
    if name in tflite.VARIANTS:
        entry["tflite"] = tflite_inspect.inspect(path)
    return entry


def _reload_predict(name: str, path: str, images: np.ndarray, entry: dict) -> np.ndarray:
    """Reloads an artifact from disk and returns its logits on `images`.

    TFLite files run as a deployer runs them: LiteRT with its default XNNPACK
    delegate. If XNNPACK cannot load the file, that is recorded in `entry`
    (`xnnpack_error`, shown as a warning in the table) and parity is checked
    with the built-in kernels instead.
    """
    if name == "keras":
        reloaded = keras.saving.load_model(path, compile=False)
        return keras.ops.convert_to_numpy(reloaded(images, training=False))
    if name == "saved_model":
        return keras_export.load_saved_model_fn(path)(images)
    try:
        return runtime.predict(path, images)
    except RuntimeError as error:
        if not runtime.is_delegate_failure(error):
            raise
        entry["xnnpack_error"] = str(error)
        logging.warning("XNNPACK cannot load %s (%s); checking parity with the "
                        "built-in kernels. Deployers must disable XNNPACK for it.",
                        path, error)
        return runtime.predict(path, images, xnnpack=False)
