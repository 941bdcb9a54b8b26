"""The ONNX op vocabulary of quantization: which ops the quantizers take, which CPUs an int8 file is exact on,
and an op census of a model."""

from __future__ import annotations

from ..._lazy import require
from .options import EXTRA

# ---- derived artifacts: fp16 and int8 from the fp32 export ----------------------------------------------------------
#
# The work is done by the format's own tools: onnxconverter-common's float16 converter (keep_io_types, so the
# artifact still takes and returns float32), and onnxruntime.quantization (quant_pre_process, create_calibrator,
# quantize_static / quantize_dynamic, quantize_data for weight-only storage). The code here only chooses options,
# wires tensors and checks the result. Two graph rewrites are ours:
# - weight-only int8 storage (QuantConfig.weight_only): ops ORT's quantizer leaves float (the GRU, whose kernel has
#   no int8 form in ORT, and MatMuls whose activations are too sensitive) get their constant weights stored as int8
#   + per-channel scales, dequantized by Cast + Mul that ORT folds at load; the op itself still computes in float.
# - hoisting the GRU input projection (QuantConfig.gru = hoisted): see hoist_gru_input_projection.

_INTEGER_OPS = {"ConvInteger", "MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QGemm", "QAttention",
                "DynamicQuantizeLSTM"}
_QDQ_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
_WEIGHT_SLOTS = {"MatMul": (1,), "Conv": (1,), "GRU": (1, 2), "LSTM": (1, 2), "RNN": (1, 2)}
_RECURRENT = ("GRU", "LSTM", "RNN")


# int8 kernel families (edgeseq.environment.int8_isa) whose u8s8 / s8s8 integer products cannot saturate: VNNI and
# AMX accumulate in 32 bits, ARM's kernels widen before they multiply. x86 AVX2 (and older) runs u8s8 through
# vpmaddubsw, whose pairwise 16-bit sums overflow for large weights times large activations.
_WIDE_INT8_ISAS = ("x86-avx512-vnni", "x86-avx-vnni", "x86-amx", "arm64-neon", "arm64-dotprod", "arm64-i8mm")


def int8_safe_isas(config) -> tuple[str, ...]:
    """The CPUs on which ONNX Runtime runs this config's integer kernels exactly: (EVERY_CPU,) or a tuple of
    int8 kernel families. Signed int8 weights at 8 bits (u8s8, and s8s8 which x86 runs as u8s8) saturate without
    VNNI; uint8 weights (u8u8) or 7-bit weights (reduce_range) never do."""
    from ...quantize import EVERY_CPU, QuantDtype

    if not config.is_int8 or config.weight_type is QuantDtype.UINT8 or config.reduce_range:
        return (EVERY_CPU,)
    return _WIDE_INT8_ISAS


def quantizable_op_types(config) -> set[str]:
    """The op types this onnxruntime's quantizer takes for the config: quantize_dynamic's integer ops, or
    quantize_static's QDQ / QOperator registry (GRU stays float in all three; see --quant gru=hoisted)."""
    require("onnxruntime", EXTRA)
    from onnxruntime.quantization import registry

    from ...quantize import Approach, QuantFormat

    if config.approach is Approach.INT8_DYNAMIC:
        return set(registry.IntegerOpsRegistry)
    return set(registry.QDQRegistry if config.quant_format is QuantFormat.QDQ else registry.QLinearOpsRegistry)


def weight_only_op_types(config=None) -> set[str]:
    """The op types whose constant weights store_weights_int8 knows how to store as int8."""
    return set(_WEIGHT_SLOTS)


def op_census(model) -> dict[str, dict[str, int]]:
    """Which op types compute in int8, fp16 and fp32 in a (quantized) graph; weight-only ones are listed apart.

    Q/DQ bookkeeping and constant-only nodes (weight preparation the runtime folds) are left out. A QDQ-wrapped op
    (its data input dequantized from a quantized activation) counts as int8: ORT fuses it into an integer kernel.
    """
    from onnx import TensorProto

    graph = model.graph
    constant = {t.name for t in graph.initializer} | {""}
    types = {v.name: v.type.tensor_type.elem_type for v in graph.input}
    types.update({t.name: t.data_type for t in graph.initializer})
    producer: dict = {}
    census: dict[str, dict[str, int]] = {"int8_ops": {}, "fp16_ops": {}, "float_ops": {}, "weight_only_ops": {}}
    floats = {TensorProto.FLOAT: "float_ops", TensorProto.DOUBLE: "float_ops", TensorProto.FLOAT16: "fp16_ops"}

    def bump(kind, op):
        census[kind][op] = census[kind].get(op, 0) + 1

    aux, acc, dequantized = set(), set(), set()  # dynamic-quant scales, int32 accumulators, int8-stored weights
    for node in graph.node:
        attrs = {a.name: a for a in node.attribute}
        first = next((types.get(i) for i in node.input if i and types.get(i)), TensorProto.FLOAT)
        if node.op_type == "Cast":
            out_type = attrs["to"].i
        elif node.op_type in ("Shape", "Size"):
            out_type = TensorProto.INT64
        elif node.op_type == "DequantizeLinear":
            out_type = TensorProto.FLOAT
        elif node.op_type in ("QuantizeLinear", "DynamicQuantizeLinear") or node.op_type.startswith("QLinear"):
            out_type = TensorProto.UINT8
        elif node.op_type in ("ConvInteger", "MatMulInteger"):
            out_type = TensorProto.INT32
        elif node.op_type in _INTEGER_OPS:
            out_type = TensorProto.FLOAT
        elif node.op_type == "ConstantOfShape":
            out_type = attrs["value"].t.data_type if "value" in attrs else TensorProto.FLOAT
        else:
            out_type = first
        for o in node.output:
            types[o] = out_type
            producer[o] = node
        inputs = [i for i in node.input if i]
        if node.op_type == "DynamicQuantizeLinear":
            types[node.output[1]] = TensorProto.FLOAT
            aux.update(node.output[1:])
        if all(i in constant for i in node.input) or node.op_type == "Constant":
            constant.update(node.output)  # weight preparation the runtime folds at load
            if any(types.get(i) in (TensorProto.INT8, TensorProto.UINT8) or i in dequantized for i in inputs):
                dequantized.update(node.output)  # ... from int8 storage: a weight-only int8 weight
            continue
        if node.op_type in _QDQ_OPS:
            continue
        # dynamic quantization's own arithmetic: scale products, int32 -> float casts, rescaling Muls
        if node.op_type == "Mul" and all(i in aux or i in constant for i in inputs):
            aux.update(node.output)
            continue
        if node.op_type == "Cast" and inputs[0] in acc:
            acc.update(node.output)
            continue
        if node.op_type == "Mul" and any(i in acc for i in inputs):
            continue
        if node.op_type in ("ConvInteger", "MatMulInteger"):
            acc.update(node.output)
        if node.op_type in _INTEGER_OPS or node.op_type.startswith("QLinear"):
            bump("int8_ops", node.op_type)
            continue
        data = producer.get(node.input[0]) if node.input else None
        if data is not None and data.op_type == "DequantizeLinear" and data.input[0] not in constant:
            bump("int8_ops", node.op_type)
            continue
        kind = floats.get(out_type)
        if kind is None:
            continue  # integer / shape arithmetic
        bump(kind, node.op_type)
        if any(i in dequantized for i in inputs[1:]):
            bump("weight_only_ops", node.op_type)
    return census
