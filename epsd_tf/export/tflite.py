"""TFLite conversion of an exported SavedModel into the deployable variants.

Conversion starts from the `model.export` SavedModel (`from_saved_model`),
which works for Keras 3 models in TF 2.21 (so does `from_keras_model`; the
SavedModel route converts exactly the artifact that was shipped).

Variants:
    float32          dense float weights.
    float32_sparse   `Optimize.EXPERIMENTAL_SPARSITY`: weights with enough zeros
                     are stored in TFLite's sparse format and a DENSIFY op
                     rebuilds them at load time (XNNPACK can run some of them
                     sparse, see `inspect.xnnpack_sparse_report`).
    float16          float16 weights (dequantised at load).
    int8             full-integer post-training quantisation: int8 weights and
                     activations, int8 input/output, calibrated on a
                     representative dataset.
    int8_sparse      int8 with `EXPERIMENTAL_SPARSITY` on top.
"""

from typing import Callable, Iterable, Optional

import numpy as np
from absl import logging

from epsd_tf.export import files

VARIANTS = ("float32", "float32_sparse", "float16", "int8", "int8_sparse")
INT8_VARIANTS = ("int8", "int8_sparse")


class TFLiteConversionError(RuntimeError):
    """The TFLite converter rejected the model for one variant."""


def check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"Unknown TFLite variant {variant!r}; valid: {VARIANTS}.")


def representative_dataset(data, num_examples: int = 128
                           ) -> Callable[[], Iterable[list]]:
    """Turns training-pipeline data into a converter calibration generator.

    Args:
        data: a `tf.data.Dataset` (or any iterable) yielding image batches or
            `(images, labels)` batches, or a numpy array of images `[N,H,W,C]`.
            Pass the training pipeline (`DataSplits.train`) so calibration sees
            the normalised inputs the model was trained on.
        num_examples: how many single examples to draw (batch 1 each).

    Returns:
        A zero-argument callable yielding `[image[1,H,W,C] float32]` lists.
    """
    if data is None:
        raise ValueError(
            "int8 export needs representative_data (a tf.data.Dataset of "
            "training batches or an array of images) to calibrate activation "
            "ranges; none was given.")
    if num_examples < 1:
        raise ValueError(f"num_examples must be >= 1, got {num_examples}.")

    def batches():
        if isinstance(data, np.ndarray):
            yield data
            return
        for batch in data:
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            if isinstance(images, dict):
                raise ValueError(
                    "representative_data must yield images or (images, labels); "
                    f"got a dict with keys {sorted(images)}.")
            yield np.asarray(images)

    def generator():
        drawn = 0
        for images in batches():
            for image in images.astype(np.float32):
                yield [image[np.newaxis]]
                drawn += 1
                if drawn >= num_examples:
                    return
        if drawn == 0:
            raise ValueError("representative_data yielded no examples.")

    return generator


def convert(saved_model_dir: str, variant: str,
            representative: Optional[Callable] = None) -> bytes:
    """Converts the SavedModel to one TFLite variant and returns the flatbuffer.

    Raises:
        ValueError: unknown variant, or an int8 variant without `representative`.
        TFLiteConversionError: the converter failed (its message is included).
    """
    import tensorflow as tf

    check_variant(variant)
    if variant in INT8_VARIANTS and representative is None:
        raise ValueError(
            f"TFLite variant {variant!r} needs a representative dataset; pass "
            "representative_data drawn from the training pipeline.")
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    optimizations = []
    if variant in ("float32_sparse", "int8_sparse"):
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    if variant in ("float16",) + INT8_VARIANTS:
        optimizations.append(tf.lite.Optimize.DEFAULT)
    converter.optimizations = optimizations
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if variant in INT8_VARIANTS:
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    try:
        flatbuffer = converter.convert()
    except Exception as error:  # The converter raises many unrelated types.
        raise TFLiteConversionError(
            f"TFLite conversion of {saved_model_dir!r} to variant {variant!r} "
            f"failed: {type(error).__name__}: {error}") from error
    logging.info("Converted %s to TFLite %s: %d bytes.", saved_model_dir,
                 variant, len(flatbuffer))
    return flatbuffer


def write(saved_model_dir: str, path: str, variant: str,
          representative: Optional[Callable] = None,
          overwrite: bool = False) -> str:
    """Converts and writes one variant atomically (no file on failure)."""
    files.check_destination(path, overwrite)
    flatbuffer = convert(saved_model_dir, variant, representative)
    files.write_bytes(path, flatbuffer, overwrite)
    return path
