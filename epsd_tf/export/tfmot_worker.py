"""TF-MOT worker: PQAT of an EPSD-pruned network in a legacy-Keras process.

Run only through `epsd_tf.export.tfmot_adapter.run_pqat`, which writes the job
files and starts `TF_USE_LEGACY_KERAS=1 python -m epsd_tf.export.tfmot_worker
--spec job/spec.json`. Steps (TF-MOT's collaborative-optimisation recipe):

1. Rebuild the network from the sanitised Functional config with `tf_keras`
   layers and load the trained weights.
2. Wrap every masked layer in TF-MOT `PruneLowMagnitude` with a frozen
   schedule (ConstantSparsity whose begin_step is never reached, so TF-MOT
   never recomputes a mask), write the EPSD masks into `pruning_vars` and
   apply them (`weight_mask_op`), then `strip_pruning`.
3. `quantize_apply(quantize_annotate_model(...),
   Default8BitPrunePreserveQuantizeScheme())`: QAT whose weight quantisers
   multiply by the sparsity pattern of the stripped kernels, so zeros stay
   zeros; fine-tune with Adam.
4. Convert to a full-integer int8 TFLite file (optionally sparse-encoded),
   evaluate it with LiteRT and write `result.json`.

Progress goes to the log as lines containing "PROGRESS", which the parent relays.
"""

import argparse
import inspect
import json
import os

import numpy as np
from absl import logging

if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
    raise RuntimeError("tfmot_worker must run with TF_USE_LEGACY_KERAS=1; start it "
                       "through epsd_tf.export.tfmot_adapter.run_pqat.")

import tensorflow as tf  # noqa: E402  (after the environment check)
import tensorflow_model_optimization as tfmot  # noqa: E402
import tf_keras  # noqa: E402
from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import (  # noqa: E402
    PruneLowMagnitude,
)

_BASE_KEYS = ("name", "trainable", "dtype")


def _progress(message: str, *args) -> None:
    logging.info("PROGRESS " + message, *args)


def _layer_from_config(entry: dict):
    """A tf_keras layer from a (sanitised) Keras 3 layer config entry."""
    cls = getattr(tf_keras.layers, entry["class_name"], None)
    if cls is None:
        raise ValueError(f"tf_keras has no layer class {entry['class_name']!r} "
                         f"(layer {entry['name']!r}).")
    config = dict(entry["config"])
    if entry["class_name"] == "InputLayer":
        return None, config
    # Subclasses forward options to their bases through **kwargs (tf_keras
    # BatchNormalization -> BatchNormalizationBase), so collect the whole MRO.
    accepted = set(_BASE_KEYS)
    for base in cls.__mro__:
        if "__init__" in vars(base):
            accepted |= set(inspect.signature(base.__init__).parameters)
    unknown = {k: v for k, v in config.items() if k not in accepted}
    # Keras-3-only options left at their defaults (None/False) mean nothing here.
    blocking = {k: v for k, v in unknown.items() if v not in (None, False)}
    if blocking:
        raise ValueError(f"Layer {entry['name']!r} ({entry['class_name']}) uses options "
                         f"tf_keras does not support: {blocking}.")
    for key in unknown:
        config.pop(key)
    return cls.from_config(config), config


def _resolve(value, tensors: dict):
    """Replaces Keras 3 `__keras_tensor__` references by tf_keras tensors."""
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        return tensors[tuple(value["config"]["keras_history"])]
    if isinstance(value, dict):
        return {k: _resolve(v, tensors) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_resolve(v, tensors) for v in value]
    return value


def build_model(architecture: dict):
    """Rebuilds a Keras 3 Functional config as a tf_keras Functional model."""
    tensors = {}
    for entry in architecture["layers"]:
        layer, config = _layer_from_config(entry)
        if layer is None:
            tensors[(entry["name"], 0, 0)] = tf_keras.Input(
                batch_shape=config["batch_shape"], dtype=config.get("dtype", "float32"),
                name=entry["name"])
            continue
        for node_index, node in enumerate(entry["inbound_nodes"]):
            args = _resolve(node["args"], tensors)
            kwargs = _resolve(node.get("kwargs", {}), tensors)
            outputs = layer(*args, **kwargs)
            outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
            for tensor_index, output in enumerate(outputs):
                tensors[(entry["name"], node_index, tensor_index)] = output
    inputs = [tensors[tuple(ref)] for ref in _refs(architecture["input_layers"])]
    outputs = [tensors[tuple(ref)] for ref in _refs(architecture["output_layers"])]
    return tf_keras.Model(inputs[0] if len(inputs) == 1 else inputs,
                          outputs[0] if len(outputs) == 1 else outputs,
                          name=architecture.get("name"))


def _refs(layers) -> list:
    """`["x", 0, 0]` or `[["x", 0, 0], ...]` -> list of refs."""
    return [layers] if layers and isinstance(layers[0], str) else list(layers)


def load_weights(model, weights) -> None:
    for layer in model.layers:
        values = [weights[f"{layer.name}/{i}"] for i in range(len(layer.get_weights()))]
        shapes = [tuple(w.shape) for w in layer.get_weights()]
        if [v.shape for v in values] != shapes:
            raise ValueError(f"Weight shapes of {layer.name!r} differ: tf_keras "
                             f"{shapes}, saved {[v.shape for v in values]}.")
        layer.set_weights(values)


def hold_masks_in_tfmot(model, masks):
    """Wraps masked layers in TF-MOT pruning wrappers holding the EPSD masks.

    TF-MOT 0.8 cannot prune DepthwiseConv2D (its prune registry lists no
    prunable weight for it), so depthwise masks are applied to the kernel
    directly here and kept through QAT by `KeepDepthwiseMasks`.

    Returns the stripped model whose kernels are `kernel * mask`, exactly as
    TF-MOT's own pruning would leave them.
    """
    sparsity = tfmot.sparsity.keras
    frozen = sparsity.ConstantSparsity(0.5, begin_step=2**62, end_step=-1, frequency=1)

    def wrap(layer):
        if layer.name in masks and not isinstance(layer, tf_keras.layers.DepthwiseConv2D):
            return sparsity.prune_low_magnitude(layer, pruning_schedule=frozen)
        return layer

    # clone_function receives the source layers themselves, so the wrappers
    # wrap the already-loaded layers: no weight copy is needed.
    wrapped = tf_keras.models.clone_model(model, clone_function=wrap)
    for layer in wrapped.layers:
        if isinstance(layer, PruneLowMagnitude):
            (_, mask, _), = layer.pruning_vars
            mask.assign(masks[layer.layer.name].reshape(mask.shape))
            layer.pruning_obj.weight_mask_op()  # weight <- weight * mask (eager)
        elif layer.name in masks:
            kernel = layer.depthwise_kernel
            kernel.assign(kernel * masks[layer.name].reshape(kernel.shape))
    return sparsity.strip_pruning(wrapped)


class KeepDepthwiseMasks(tf_keras.callbacks.Callback):
    """Re-applies depthwise masks after each QAT step (PQAT does not preserve them)."""

    def __init__(self, masks):
        super().__init__()
        self.masks = masks

    def on_train_batch_end(self, batch, logs=None):
        for layer in self.model.layers:
            inner = getattr(layer, "layer", None)
            if isinstance(inner, tf_keras.layers.DepthwiseConv2D) and inner.name in self.masks:
                # The QuantizeWrapper swaps the layer attribute for the fake-
                # quantised tensor; the variable is found among its weights.
                for kernel in layer.trainable_weights:
                    if "depthwise_kernel" in kernel.name:
                        kernel.assign(kernel * self.masks[inner.name].reshape(kernel.shape))


def kernel_sparsity(model, masks) -> float:
    """Exact-zero fraction over the masked kernels of a (stripped) tf_keras model."""
    from epsd_tf import files

    zeros, total = files.count_zeros(
        layer.depthwise_kernel if hasattr(layer, "depthwise_kernel") else layer.kernel
        for layer in model.layers if layer.name in masks)
    return zeros / max(total, 1)


def pqat(stripped, spec, data, masks):
    quantize = tfmot.quantization.keras
    annotated = quantize.quantize_annotate_model(stripped)
    model = quantize.quantize_apply(
        annotated, tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme())
    model.compile(optimizer=tf_keras.optimizers.Adam(spec["learning_rate"]),
                  loss=tf_keras.losses.SparseCategoricalCrossentropy(
                      from_logits=spec["from_logits"]),
                  metrics=["accuracy"])
    if spec["epochs"] > 0:
        model.fit(data["x_train"], data["y_train"], batch_size=spec["batch_size"],
                  epochs=spec["epochs"], verbose=0, callbacks=[KeepDepthwiseMasks(masks)])
    return model


def convert(model, sparse: bool) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if sparse:
        converter.optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def _accuracy(model, data) -> float:
    return float(model.evaluate(data["x_test"], data["y_test"], verbose=0,
                                batch_size=256)[1])


def _tflite_accuracy(path: str, data) -> float:
    from epsd_tf.export import runtime

    correct = 0
    for start in range(0, len(data["x_test"]), 256):
        images = data["x_test"][start:start + 256]
        try:
            logits = runtime.predict(path, images)
        except RuntimeError as error:
            if not runtime.is_delegate_failure(error):
                raise
            logits = runtime.predict(path, images, xnnpack=False)
        correct += int(np.sum(np.argmax(logits, -1) == data["y_test"][start:start + 256]))
    return correct / len(data["x_test"])


def main(spec_path: str) -> None:
    from epsd_tf.export import tflite_inspect

    with open(spec_path) as handle:
        spec = json.load(handle)
    job = spec["job_dir"]
    weights = dict(np.load(os.path.join(job, "weights.npz")))
    masks = dict(np.load(os.path.join(job, "masks.npz")))
    data = dict(np.load(os.path.join(job, "data.npz")))
    _progress("rebuilding %d layers in tf_keras %s", len(spec["architecture"]["layers"]),
              tf_keras.__version__)
    model = build_model(spec["architecture"])
    load_weights(model, weights)
    model.compile(loss=tf_keras.losses.SparseCategoricalCrossentropy(
        from_logits=spec["from_logits"]), metrics=["accuracy"])
    float_accuracy = _accuracy(model, data)
    target = (sum(float(np.sum(m == 0)) for m in masks.values())
              / sum(m.size for m in masks.values()))
    stripped = hold_masks_in_tfmot(model, masks)
    _progress("masks held in TF-MOT wrappers: sparsity %.4f (target %.4f); float acc %.4f",
              kernel_sparsity(stripped, masks), target, float_accuracy)
    qat_model = pqat(stripped, spec, data, masks)
    qat_accuracy = _accuracy(qat_model, data)
    _progress("PQAT done (%d epochs): acc %.4f; converting to int8", spec["epochs"],
              qat_accuracy)
    flatbuffer = convert(qat_model, spec["sparse_tflite"])
    with open(spec["tflite_path"], "wb") as handle:
        handle.write(flatbuffer)
    info = tflite_inspect.inspect(flatbuffer)
    # Sparsity over the masked kernels only (unmasked weighted ops excluded).
    result = {
        "float_accuracy": float_accuracy,
        "qat_accuracy": qat_accuracy,
        "tflite_accuracy": _tflite_accuracy(spec["tflite_path"], data),
        "target_sparsity": target,
        "stripped_sparsity": kernel_sparsity(stripped, masks),
        "tflite_weight_sparsity": info["weight_sparsity"],
        "tflite_sparse_tensors": info["sparse_tensors"],
        "train_examples": int(len(data["x_train"])), "test_examples": int(len(data["x_test"])),
        "epochs": spec["epochs"], "learning_rate": spec["learning_rate"],
        "versions": {"tensorflow": tf.__version__, "tf_keras": tf_keras.__version__,
                     "tensorflow_model_optimization": tfmot.__version__},
    }
    from epsd_tf import files

    files.write_json(spec["result_path"], result)
    _progress("int8 TFLite acc %.4f, weight sparsity %.4f", result["tflite_accuracy"],
              result["tflite_weight_sparsity"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="job spec.json from run_pqat")
    logging.set_verbosity(logging.INFO)
    main(parser.parse_args().spec)
