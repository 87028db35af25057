"""Static inspection of TFLite flatbuffers: sparse tensors, DENSIFY ops,
weight sparsity, and which layers XNNPACK's sparse inference can take.

XNNPACK runs a subgraph sparsely (Elsen et al., "Fast Sparse ConvNets", CVPR
2020) only under the conditions of the TFLite XNNPACK delegate README: fp32
weights stored sparse (DENSIFY ops); the subgraph starts with a 3x3 stride-2
CONV_2D with padding 1 on each side and 3 input channels and ends with a
spatial MEAN; inside it only 1x1 unpadded CONV_2D (and at least 2/3 of all
their weights zero), 3x3/5x5 DEPTHWISE_CONV_2D with stride 1 or 2 and
symmetric padding, ADD/MUL and unary elementwise ops. 3x3 dense convolutions
(all of ResNet-20 but the stem) have no sparse kernel; int8 files never use it.
The report below checks these rules per layer so a user can see why a model
is or is not faster. It is a static reading of the documented rules, not a
trace of what the delegate did.
"""

import math
from typing import Union

import numpy as np
from ai_edge_litert import schema_py_generated as schema

_OPS = {value: name for name, value in vars(schema.BuiltinOperator).items()
        if not name.startswith("_")}
_DTYPE = {schema.TensorType.FLOAT32: np.float32,
          schema.TensorType.FLOAT16: np.float16,
          schema.TensorType.INT8: np.int8,
          schema.TensorType.UINT8: np.uint8,
          schema.TensorType.INT32: np.int32,
          schema.TensorType.INT64: np.int64}
_WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
# Ops a weight passes through between its constant buffer and the layer.
_WEIGHT_PASSTHROUGH = ("DENSIFY", "DEQUANTIZE")
_UNARY = {"ABS", "CEIL", "ELU", "FLOOR", "HARD_SWISH", "LEAKY_RELU", "LOGISTIC",
          "NEG", "RELU", "RELU6", "RELU_N1_TO_1", "ROUND", "SQUARE"}


def _load(model: Union[str, bytes]) -> schema.Model:
    if isinstance(model, str):
        with open(model, "rb") as handle:
            model = handle.read()
    return schema.Model.GetRootAsModel(bytearray(model), 0)


def _op_name(model, op) -> str:
    code = model.OperatorCodes(op.OpcodeIndex())
    return _OPS.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")


def _same_padding(size: int, kernel: int, stride: int) -> tuple:
    """TF SAME padding (before, after) along one spatial axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _short_name(tensor_name: str) -> str:
    """The op's own piece of a fused TFLite tensor name ("a/relu;a/conv;...")."""
    pieces = tensor_name.split(";")
    for marker in ("convolution", "depthwise", "MatMul", "BiasAdd"):
        for piece in pieces:
            if marker in piece:
                return piece[:96]
    return pieces[0][:96]


def _tensor_zeros(model, tensor) -> tuple:
    """(number of zero weights, number of weights) of a constant tensor.

    For a tensor in TFLite's sparse format the buffer stores only the values
    of the kept blocks, so zeros = dense size - stored nonzeros.
    """
    data = model.Buffers(tensor.Buffer()).DataAsNumpy()
    size = int(np.prod(tensor.ShapeAsNumpy()))
    if isinstance(data, int) or tensor.Type() not in _DTYPE:
        return 0, size
    values = np.frombuffer(data.tobytes(), dtype=_DTYPE[tensor.Type()])
    return size - int(np.count_nonzero(values)), size


def _layer_rows(model, graph) -> list:
    """One row per weighted op with its geometry and weight storage."""
    producer = {}
    for index in range(graph.OperatorsLength()):
        op = graph.Operators(index)
        for out in op.OutputsAsNumpy():
            producer[int(out)] = op
    rows = []
    for index in range(graph.OperatorsLength()):
        op = graph.Operators(index)
        name = _op_name(model, op)
        if name not in _WEIGHTED:
            continue
        inputs = op.InputsAsNumpy()
        weight_index, passes = int(inputs[1]), []
        while weight_index in producer and _op_name(model, producer[weight_index]) in _WEIGHT_PASSTHROUGH:
            passes.append(_op_name(model, producer[weight_index]))
            weight_index = int(producer[weight_index].InputsAsNumpy()[0])
        weight = graph.Tensors(weight_index)
        zeros, size = _tensor_zeros(model, weight)
        input_shape = graph.Tensors(int(inputs[0])).ShapeAsNumpy().tolist()
        filter_shape = weight.ShapeAsNumpy().tolist()
        row = {"op": name,
               "name": _short_name(graph.Tensors(int(op.OutputsAsNumpy()[0])).Name().decode()),
               "weight_type": _DTYPE.get(weight.Type(), np.void).__name__,
               "sparse_storage": weight.Sparsity() is not None,
               "densify": "DENSIFY" in passes,
               "weight_sparsity": zeros / max(size, 1),
               "weights": size, "zero_weights": zeros,
               "input_shape": input_shape, "filter_shape": filter_shape}
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            options_class = (schema.Conv2DOptions if name == "CONV_2D"
                             else schema.DepthwiseConv2DOptions)
            options = options_class()
            table = op.BuiltinOptions()
            options.Init(table.Bytes, table.Pos)
            kernel = filter_shape[1:3]
            stride = [options.StrideH(), options.StrideW()]
            if options.Padding() == schema.Padding.SAME:
                padding = [_same_padding(input_shape[1 + axis], kernel[axis], stride[axis])
                           for axis in range(2)]
            else:
                padding = [(0, 0), (0, 0)]
            # An explicit PAD before a VALID conv (Keras ZeroPadding2D) is fused
            # into the convolution by XNNPACK, so it counts as conv padding.
            pad_op = producer.get(int(inputs[0]))
            if pad_op is not None and _op_name(model, pad_op) in ("PAD", "PADV2"):
                pads = graph.Tensors(int(pad_op.InputsAsNumpy()[1]))
                data = model.Buffers(pads.Buffer()).DataAsNumpy()
                if not isinstance(data, int):
                    values = np.frombuffer(data.tobytes(), _DTYPE[pads.Type()]).reshape(-1, 2)
                    padding = [(int(values[1 + axis][0]) + padding[axis][0],
                                int(values[1 + axis][1]) + padding[axis][1])
                               for axis in range(2)]
                    input_shape = graph.Tensors(int(pad_op.InputsAsNumpy()[0])).ShapeAsNumpy().tolist()
            row.update(kernel=kernel, stride=stride, padding=padding, input_shape=input_shape,
                       dilation=[options.DilationHFactor(), options.DilationWFactor()],
                       input_channels=input_shape[-1])
        rows.append(row)
    return rows


def _xnnpack_verdict(row: dict, is_first: bool) -> tuple:
    """(can run sparse, reason) for one weighted op under XNNPACK's rules."""
    if row["op"] == "FULLY_CONNECTED":
        return False, "FULLY_CONNECTED is after the sparse subgraph's MEAN; runs dense"
    if row["weight_type"] != "float32" and not row["densify"]:
        return False, f"{row['weight_type']} weights: sparse inference is fp32 only"
    kernel, stride, padding = row["kernel"], row["stride"], row["padding"]
    symmetric = all(before == after == (k - 1) // 2
                    for (before, after), k in zip(padding, kernel))
    if row["dilation"] != [1, 1]:
        return False, "dilated convolution"
    if row["op"] == "CONV_2D":
        if kernel == [1, 1]:
            if not row["densify"]:
                return False, "1x1 conv stored dense (no DENSIFY; too few zeros?)"
            return True, "1x1 conv with sparse (DENSIFY) weights"
        if is_first and kernel == [3, 3] and stride == [2, 2] and row["input_channels"] == 3:
            if symmetric:
                return True, "stem 3x3 stride-2 conv (runs dense, converts to CHW)"
            return False, f"stem 3x3 stride-2 conv has padding {padding}, needs 1 each side"
        return False, f"{kernel[0]}x{kernel[1]} CONV_2D has no sparse kernel (only 1x1)"
    if kernel in ([3, 3], [5, 5]) and stride in ([1, 1], [2, 2]):
        if symmetric:
            return True, "depthwise conv allowed inside the sparse subgraph (runs dense)"
        return False, f"depthwise padding {padding} is not symmetric"
    return False, f"depthwise {kernel} stride {stride} not supported sparse"


def inspect(model: Union[str, bytes]) -> dict:
    """Summarises a TFLite file.

    Returns:
        `{"sparse_tensors", "densify_ops", "op_counts", "weight_sparsity",
        "layers": [...], "xnnpack_sparse": {...}}`; `weight_sparsity` is the
        exact-zero fraction over all CONV_2D/DEPTHWISE/FULLY_CONNECTED weights.
    """
    flat = _load(model)
    graph = flat.Subgraphs(0)
    sparse_tensors = sum(
        flat.Subgraphs(s).Tensors(t).Sparsity() is not None
        for s in range(flat.SubgraphsLength())
        for t in range(flat.Subgraphs(s).TensorsLength()))
    op_counts = {}
    for index in range(graph.OperatorsLength()):
        name = _op_name(flat, graph.Operators(index))
        op_counts[name] = op_counts.get(name, 0) + 1
    rows = _layer_rows(flat, graph)
    zeros = sum(row["zero_weights"] for row in rows)
    total = sum(row["weights"] for row in rows)
    for position, row in enumerate(rows):
        row["xnnpack_sparse"], row["xnnpack_reason"] = _xnnpack_verdict(row, position == 0)
    return {"sparse_tensors": int(sparse_tensors),
            "densify_ops": op_counts.get("DENSIFY", 0),
            "op_counts": op_counts,
            "weight_sparsity": zeros / total if total else 0.0,
            "layers": rows,
            "xnnpack_sparse": _graph_verdict(rows, op_counts)}


def _graph_verdict(rows: list, op_counts: dict) -> dict:
    """Whole-graph conditions for XNNPACK's sparse path and a plain summary."""
    convs = [row for row in rows if row["op"] != "FULLY_CONNECTED"]
    one_by_one = [row for row in convs if row["op"] == "CONV_2D" and row["kernel"] == [1, 1]]
    zero_fraction = (sum(r["zero_weights"] for r in one_by_one)
                     / max(sum(r["weights"] for r in one_by_one), 1))
    stem_ok = bool(convs) and convs[0]["xnnpack_sparse"] and convs[0]["op"] == "CONV_2D"
    blocking = [row for row in convs[1:] if not row["xnnpack_sparse"]]
    conditions = {
        "stem_3x3_stride2_3_channels": stem_ok,
        "ends_with_mean": "MEAN" in op_counts,
        "densify_ops_present": op_counts.get("DENSIFY", 0) > 0,
        "one_by_one_zero_fraction": zero_fraction,
        "one_by_one_zero_fraction_ok": bool(one_by_one) and zero_fraction >= 2 / 3,
        "blocking_layers": len(blocking),
    }
    eligible = [row["name"] for row in one_by_one if row["xnnpack_sparse"]]
    likely = (stem_ok and conditions["ends_with_mean"] and conditions["densify_ops_present"]
              and conditions["one_by_one_zero_fraction_ok"])
    if likely and not blocking:
        summary = (f"All {len(convs)} conv layers fit XNNPACK's documented sparse rules; "
                   f"{len(eligible)} sparse 1x1 convs can run sparse.")
    elif likely:
        summary = (f"{len(eligible)} sparse 1x1 convs fit XNNPACK's sparse rules, but "
                   f"{len(blocking)} layers break the subgraph (first: "
                   f"{blocking[0]['xnnpack_reason']}); expect partial or no speed-up.")
    else:
        failed = [key for key in ("stem_3x3_stride2_3_channels", "ends_with_mean",
                                  "densify_ops_present", "one_by_one_zero_fraction_ok")
                  if not conditions[key]]
        summary = ("Documented XNNPACK sparse-inference conditions not met: "
                   + ", ".join(failed) + f"; {len(blocking)} layers outside the rules.")
    # Padding rules are checked on the TFLite graph; how the delegate lowers
    # SAME padding can differ between LiteRT versions, so the measured
    # sparse/dense latency (added by export_all) is the ground truth.
    summary += " (Static reading of the documented rules; compare the measured latency.)"
    return {"conditions": conditions, "likely_sparse": bool(likely and not blocking),
            "eligible_layers": eligible,
            "ineligible_layers": [(row["name"], row["xnnpack_reason"]) for row in blocking],
            "summary": summary}
