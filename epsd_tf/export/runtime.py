"""Running TFLite files with the LiteRT interpreter (`ai-edge-litert`).

Inference on a batch (for parity) and latency (median of many single-example
runs after warm-up) with XNNPACK on or off and a chosen thread count. int8
files take and return int8 tensors; the runner quantises inputs and
dequantises outputs with the scales stored in the file, so callers always
pass and receive float32.
"""

import os
import statistics
import time

import numpy as np


def _interpreter(path: str, num_threads: int = 1, xnnpack: bool = True):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = (OpResolverType.AUTO if xnnpack
                else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    return Interpreter(model_path=path, num_threads=num_threads,
                       experimental_op_resolver_type=resolver)


def _quantize(values: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if detail["dtype"] == np.float32 or scale == 0:
        return values.astype(detail["dtype"])
    info = np.iinfo(detail["dtype"])
    quantized = np.round(values / scale) + zero_point
    return np.clip(quantized, info.min, info.max).astype(detail["dtype"])


def _dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if detail["dtype"] == np.float32 or scale == 0:
        return values.astype(np.float32)
    return (values.astype(np.float32) - zero_point) * scale


def predict(path: str, images: np.ndarray, num_threads: int = 1,
            xnnpack: bool = True) -> np.ndarray:
    """Runs a single-input TFLite classifier on a batch.

    Args:
        path: the `.tflite` file.
        images: float32 `[N, H, W, C]`.

    Returns:
        float32 logits `[N, num_classes]`.
    """
    interpreter = _interpreter(path, num_threads, xnnpack)
    detail = interpreter.get_input_details()[0]
    # The converter keeps the SavedModel's free batch dimension
    # (shape_signature[0] == -1), so the whole batch runs in one invoke.
    interpreter.resize_tensor_input(detail["index"], list(images.shape))
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], _quantize(np.asarray(images, np.float32), detail))
    interpreter.invoke()
    output = interpreter.get_output_details()[0]
    return _dequantize(interpreter.get_tensor(output["index"]), output)


def latency(path: str, num_threads: int = 1, xnnpack: bool = True,
            runs: int = 50, warmup: int = 5) -> dict:
    """Single-example latency of a TFLite file.

    Returns:
        `{"median_ms", "p90_ms", "runs", "warmup", "num_threads", "xnnpack"}`:
        median and 90th percentile of `runs` timed invocations after `warmup`
        untimed ones, on a fixed random input of batch 1.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"need runs >= 1 and warmup >= 0, got {runs}, {warmup}.")
    interpreter = _interpreter(path, num_threads, xnnpack)
    detail = interpreter.get_input_details()[0]
    shape = [1] + list(detail["shape"][1:])
    interpreter.resize_tensor_input(detail["index"], shape)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    sample = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    interpreter.set_tensor(detail["index"], _quantize(sample, detail))
    for _ in range(warmup):
        interpreter.invoke()
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        timings.append((time.perf_counter() - start) * 1e3)
    timings.sort()
    return {"median_ms": statistics.median(timings),
            "p90_ms": timings[min(len(timings) - 1, int(0.9 * len(timings)))],
            "runs": runs, "warmup": warmup, "num_threads": num_threads,
            "xnnpack": xnnpack}


def is_delegate_failure(error: Exception) -> bool:
    """True if `error` is XNNPACK refusing to prepare a node of the model.

    LiteRT 2.3.0's XNNPACK cannot prepare an int8 FULLY_CONNECTED whose
    weights are stored sparse (DENSIFY); the built-in kernels run it fine.
    """
    return isinstance(error, RuntimeError) and "XNNPack" in str(error)


def latency_grid(path: str, runs: int = 50, warmup: int = 5) -> dict:
    """Latency with XNNPACK on/off x 1 thread/all threads.

    Returns:
        `{"xnnpack_1t": {...}, "xnnpack_allt": {...}, "builtin_1t": ...,
        "builtin_allt": ...}` (values from `latency`); a setting whose
        delegate cannot load the file holds `{"error": message}` instead.
    """
    all_threads = os.cpu_count() or 1
    grid = {}
    for xnnpack in (True, False):
        for label, threads in (("1t", 1), ("allt", all_threads)):
            key = f"{'xnnpack' if xnnpack else 'builtin'}_{label}"
            try:
                grid[key] = latency(path, threads, xnnpack, runs, warmup)
            except RuntimeError as error:
                if not is_delegate_failure(error):
                    raise
                grid[key] = {"error": str(error)}
    return grid
