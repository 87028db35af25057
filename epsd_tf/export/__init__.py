"""epsd_tf.export: strip -> .keras / SavedModel / TFLite; parity; size + latency; TF-MOT.

Public API:
    export_all(model, workdir, formats=..., representative_data=..., eval_batch=...,
               overwrite=False, latency_runs=50) -> report dict
    FORMATS, ParityError, TFLiteConversionError
    inspect_tflite(path) -> sparse tensors, DENSIFY ops, weight sparsity, XNNPACK notes
    sparsity_stats(model) -> exact-zero fraction of prunable kernels
    tflite_latency(path, num_threads, xnnpack, runs, warmup) -> median latency
    run_pqat(model, workdir, train_data, test_data, ...) -> TF-MOT PQAT int8 result

See epsd_tf/export/README.md for formats, the masked-model policy and the
TF-MOT adapter's extra requirements.
"""

from epsd_tf.export.keras_export import sparsity_stats, strip_if_masked
from epsd_tf.export.parity import ParityError
from epsd_tf.export.pipeline import DEFAULT_FORMATS, FORMATS, export_all
from epsd_tf.export.runtime import latency as tflite_latency
from epsd_tf.export.runtime import predict as tflite_predict
from epsd_tf.export.tflite import TFLiteConversionError
from epsd_tf.export.tflite_inspect import inspect as inspect_tflite
from epsd_tf.export.tfmot_adapter import run_pqat
