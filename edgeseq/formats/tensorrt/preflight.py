"""Preflight: the nodes of an ONNX model TensorRT's ONNX parser would reject, from onnx-tensorrt's documented
operator support (TensorRT 10), checked without TensorRT."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..._lazy import require
from ...errors import ArtifactError
from .options import DOCUMENTED_OPSETS

# ---- TensorRT's ONNX operator support (from onnx-tensorrt docs/operators.md, TensorRT 10) -------------------------

_SUPPORTED = """
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast CastLike Ceil Celu
Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace DequantizeLinear Div
Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gelu Gemm
GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization GRU HardSigmoid
HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less
LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization
Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear
RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum
ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize
ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign
Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile
TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split()
_UNSUPPORTED = """
AffineGrid Bernoulli BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor BlackmanWindow Col2Im CenterCropPad Compress
ConcatFromSequence ConvInteger DFT Det DynamicQuantizeLinear HammingWindow HannWindow ImageDecoder MatMulInteger
MaxRoiPool MaxUnpool MelWeightMatrix Multinomial NegativeLogLikelihoodLoss Optional OptionalGetElement
OptionalHasElement QLinearConv QLinearMatMul RegexFullMatch STFT SequenceAt SequenceConstruct SequenceEmpty
SequenceErase SequenceInsert SequenceLength SequenceMap SoftmaxCrossEntropyLoss SplitToSequence StringConcat
StringNormalizer StringSplit TfIdfVectorizer Unique
""".split()
# activations the parser maps onto TensorRT activation layers (RNN / GRU / LSTM `activations` attribute)
RNN_ACTIVATIONS = frozenset(
    "Relu Tanh Sigmoid LeakyRelu ThresholdedRelu ScaledTanh HardSigmoid Elu Softsign Softplus".split()
)
_RNN_GATES = {"RNN": 1, "GRU": 2, "LSTM": 3}  # activations per direction
_RESIZE_COORDS = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
_RESIZE_NEAREST = {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}
_ONNX_UINT8, _ONNX_DOUBLE, _ONNX_STRING, _ONNX_FLOAT16 = 2, 11, 8, 10
_ONNX_COMPLEX = {14, 15}


@dataclass(frozen=True)
class PreflightIssue:
    node: str
    op: str
    reason: str

    def __str__(self) -> str:
        return f"{self.node or '(unnamed)'} ({self.op}): {self.reason}"

    def to_dict(self) -> dict:
        return {"node": self.node, "op": self.op, "reason": self.reason}


@dataclass(frozen=True)
class PreflightResult:
    """What TensorRT's ONNX parser would reject (issues) or handle with a caveat (warnings), node by node."""

    nodes: int
    opset: int | None
    ops: dict[str, int]
    issues: tuple[PreflightIssue, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.issues

    @property
    def quantized(self) -> bool:
        return bool(self.ops.get("QuantizeLinear") or self.ops.get("DequantizeLinear"))

    def summary(self) -> str:
        if self.ok:
            return f"{self.nodes} nodes, all supported by TensorRT's ONNX parser (opset {self.opset})"
        shown = "; ".join(str(i) for i in self.issues[:5])
        more = f"; and {len(self.issues) - 5} more" if len(self.issues) > 5 else ""
        return f"{len(self.issues)} of {self.nodes} nodes would not parse in TensorRT: {shown}{more}"

    def to_dict(self) -> dict:
        return {"ok": self.ok, "nodes": self.nodes, "opset": self.opset, "ops": dict(sorted(self.ops.items())),
                "issues": [i.to_dict() for i in self.issues], "warnings": list(self.warnings)}


class _Graph:
    """Constant-ness and attributes of one (sub)graph, for the per-op checks."""

    def __init__(self, onnx, graph, outer: "_Graph | None" = None):
        self.onnx = onnx
        self.values: dict[str, object] = dict(outer.values) if outer else {}
        for init in graph.initializer:
            self.values[init.name] = init
        for node in graph.node:
            if node.op_type == "Constant" and node.output:
                self.values[node.output[0]] = node

    def is_constant(self, name: str) -> bool:
        return name in self.values

    def array(self, name: str):
        """The value of a constant input, or None when it is not a plain tensor constant."""
        value = self.values.get(name)
        if value is None:
            return None
        if hasattr(value, "op_type"):  # a Constant node
            attr = next((a for a in value.attribute if a.name == "value"), None)
            return None if attr is None else self.onnx.numpy_helper.to_array(attr.t)
        return self.onnx.numpy_helper.to_array(value)

    def elem_type(self, name: str) -> int | None:
        value = self.values.get(name)
        if value is None:
            return None
        if hasattr(value, "op_type"):
            attr = next((a for a in value.attribute if a.name == "value"), None)
            return None if attr is None else attr.t.data_type
        return value.data_type


def _attrs(onnx, node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _input(node, i: int) -> str:
    return node.input[i] if len(node.input) > i else ""


def _check_recurrent(node, attrs: dict, g: _Graph) -> Iterable[str]:
    op = node.op_type
    direction = _text(attrs.get("direction", "forward"))
    if direction not in ("forward", "reverse", "bidirectional"):
        yield f"direction {direction!r} is not forward, reverse or bidirectional"
    gates = _RNN_GATES[op]
    acts = [_text(a) for a in attrs.get("activations", [])]
    unknown = sorted({a for a in acts if a not in RNN_ACTIVATIONS})
    if unknown:
        yield f"activations {unknown} have no TensorRT activation (it maps {', '.join(sorted(RNN_ACTIVATIONS))})"
    if direction == "bidirectional":
        for key, values in (("activations", acts), ("activation_alpha", list(attrs.get("activation_alpha", []))),
                            ("activation_beta", list(attrs.get("activation_beta", [])))):
            if len(values) == 2 * gates and values[:gates] != values[gates:]:
                yield f"bidirectional {op}: {key} differ between the forward and reverse pass ({values})"
    if int(attrs.get("layout", 0)) != 0:
        yield "layout=1 (batch-major) is not supported: the parser reads X as [seq, batch, input]"
    if op == "LSTM" and int(attrs.get("input_forget", 0)) != 0:
        yield "input_forget must be 0"
    if op == "GRU" and int(attrs.get("linear_before_reset", 0)) not in (0, 1):
        yield f"linear_before_reset={attrs['linear_before_reset']} is neither 0 nor 1"


def _check_pool(node, attrs: dict, g: _Graph) -> Iterable[str]:
    kernel = list(attrs.get("kernel_shape", []))
    if node.op_type != "LpPool" and not 1 <= len(kernel) <= 3:
        yield f"{len(kernel)}-D pooling: TensorRT pools 2-D and 3-D (1-D is expanded to 2-D by the parser)"
    if any(d != 1 for d in attrs.get("dilations", [])):
        yield f"dilations {list(attrs['dilations'])} must be empty or all ones"
    if node.op_type == "MaxPool" and len(node.output) > 1 and node.output[1]:
        yield "the Indices output is not supported"


def _check_zero_point(index: int, what: str) -> Callable:
    def check(node, attrs: dict, g: _Graph) -> Iterable[str]:
        zp = _input(node, index)
        if not zp:
            return
        if not g.is_constant(zp):
            yield f"{what} must be a constant zero (it is computed at run time)"
            return
        if g.elem_type(zp) == _ONNX_UINT8:
            yield f"{what} is uint8 (asymmetric quantization): TensorRT quantizes to signed int8 with zero point 0"
        value = g.array(zp)
        if value is not None and np.any(np.asarray(value).astype(np.float64) != 0):
            yield f"{what} must be zero (TensorRT quantization is symmetric)"

    return check


def _needs_constant(index: int, what: str) -> Callable:
    def check(node, attrs: dict, g: _Graph) -> Iterable[str]:
        name = _input(node, index)
        if name and not g.is_constant(name):
            yield f"{what} must be an initializer (a build-time constant)"

    return check


def _check_constant(node, attrs: dict, g: _Graph) -> Iterable[str]:
    for key in ("sparse_value", "value_string", "value_strings"):
        if key in attrs:
            yield f"the {key} attribute is not supported"


def _check_dropout(node, attrs: dict, g: _Graph) -> Iterable[str]:
    training = _input(node, 2)
    if training:
        value = g.array(training)
        if value is None or bool(np.asarray(value)):
            yield "training_mode must be an initializer that is False"


def _check_resize(node, attrs: dict, g: _Graph) -> Iterable[str]:
    coords = _text(attrs.get("coordinate_transformation_mode", "half_pixel"))
    if coords not in _RESIZE_COORDS:
        yield f"coordinate_transformation_mode {coords!r} is not supported"
    mode = _text(attrs.get("mode", "nearest"))
    if mode not in ("nearest", "linear"):
        yield f"mode {mode!r} is not supported (nearest, linear)"
    nearest = _text(attrs.get("nearest_mode", "round_prefer_floor"))
    if mode == "nearest" and nearest not in _RESIZE_NEAREST:
        yield f"nearest_mode {nearest!r} is not supported"
    if int(attrs.get("antialias", 0)):
        yield "antialiasing is not supported"
    if _text(attrs.get("keep_aspect_ratio_policy", "stretch")) != "stretch":
        yield "only keep_aspect_ratio_policy 'stretch' is supported"


def _check_topk(node, attrs: dict, g: _Graph) -> Iterable[str]:
    if int(attrs.get("sorted", 1)) != 1:
        yield "sorted must be 1"
    k = g.array(_input(node, 1)) if _input(node, 1) else None
    if k is not None and int(np.asarray(k).reshape(-1)[0]) >= 3840:
        yield f"K={int(np.asarray(k).reshape(-1)[0])} must be less than 3840"


def _check_layernorm(node, attrs: dict, g: _Graph) -> Iterable[str]:
    if any(node.output[1:]):
        yield "only the first output Y is supported"


def _check_scatternd(node, attrs: dict, g: _Graph) -> Iterable[str]:
    if _text(attrs.get("reduction", "none")) != "none":
        yield "reduction is not supported"


def _check_if(node, attrs: dict, g: _Graph) -> Iterable[str]:
    then, other = attrs.get("then_branch"), attrs.get("else_branch")
    if then is not None and other is not None and len(then.output) != len(other.output):
        yield "then/else branches have different numbers of outputs"


def _check_deform(node, attrs: dict, g: _Graph) -> Iterable[str]:
    pads = list(attrs.get("pads", []))
    half = len(pads) // 2
    if pads and pads[:half] != pads[half:]:
        yield f"pads {pads} must be the same at the beginning and end of each axis"


_REDUCE = ("ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum "
           "ReduceSumSquare").split()
_CHECKS: dict[str, Callable] = {
    "GRU": _check_recurrent, "RNN": _check_recurrent, "LSTM": _check_recurrent,
    "MaxPool": _check_pool, "AveragePool": _check_pool, "LpPool": _check_pool,
    "QuantizeLinear": _check_zero_point(2, "y_zero_point"),
    "DequantizeLinear": _check_zero_point(2, "x_zero_point"),
    "Constant": _check_constant,
    "CumSum": _needs_constant(1, "axis"),
    "Dropout": _check_dropout,
    "OneHot": _needs_constant(1, "depth"),
    "Pad": _needs_constant(3, "axes"),
    "Slice": _needs_constant(3, "axes"),
    "Squeeze": _needs_constant(1, "axes"),
    "Unsqueeze": _needs_constant(1, "axes"),
    "Resize": _check_resize,
    "TopK": _check_topk,
    "LayerNormalization": _check_layernorm,
    "ScatterND": _check_scatternd,
    "If": _check_if,
    "DeformConv": _check_deform,
    **{op: _needs_constant(1, "axes") for op in _REDUCE},
}
_SUPPORTED_SET, _UNSUPPORTED_SET = frozenset(_SUPPORTED), frozenset(_UNSUPPORTED)


def supported_ops() -> frozenset[str]:
    """The ONNX operators TensorRT 10's parser imports (some with restrictions, checked by `preflight`)."""
    return _SUPPORTED_SET


def preflight(model) -> PreflightResult:
    """Check an ONNX model (path or ModelProto) against TensorRT's documented ONNX support; needs no TensorRT.

    Names every node the parser would reject: operators it does not import, custom-domain operators (plugins), and
    the documented attribute restrictions (GRU/LSTM/RNN direction, activations and layout; pooling dims; Q/DQ zero
    points; inputs that must be build-time constants). Subgraphs (If / Loop / Scan bodies) are checked too.
    """
    onnx = require("onnx", "onnx")
    if not hasattr(model, "graph"):
        path = Path(model)
        if not path.is_file():
            raise ArtifactError(f"{str(path)!r} does not exist or is not a file")
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:
            raise ArtifactError(f"cannot read {str(path)!r} as ONNX: {str(exc).splitlines()[0][:200]}") from None
        if not model.graph.node:  # protobuf reads an empty file, or a few stray bytes, as an empty model
            raise ArtifactError(f"{str(path)!r} is not an ONNX model: it holds no graph (no nodes)")
    elif not model.graph.node:
        raise ArtifactError("the ONNX model holds no graph (no nodes)")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    issues: list[PreflightIssue] = []
    warnings: list[str] = []
    ops: dict[str, int] = {}
    count = 0
    if opset is not None and not DOCUMENTED_OPSETS[0] <= opset <= DOCUMENTED_OPSETS[1]:
        warnings.append(f"opset {opset} is outside the range TensorRT 10.0 documents ({DOCUMENTED_OPSETS[0]}.."
                        f"{DOCUMENTED_OPSETS[1]}); newer TensorRT releases may accept it")
    for value in list(model.graph.input) + list(model.graph.output):
        elem = value.type.tensor_type.elem_type
        if elem == _ONNX_STRING or elem in _ONNX_COMPLEX:
            issues.append(PreflightIssue(value.name, "graph I/O", "string and complex tensors are not supported"))
        elif elem == _ONNX_DOUBLE:
            warnings.append(f"{value.name!r} is float64: TensorRT casts DOUBLE down to FLOAT")

    def walk(graph, outer: _Graph | None) -> None:
        nonlocal count
        g = _Graph(onnx, graph, outer)
        for node in graph.node:
            count += 1
            op = node.op_type
            ops[op] = ops.get(op, 0) + 1
            if node.domain not in ("", "ai.onnx"):
                issues.append(PreflightIssue(node.name, f"{node.domain}::{op}",
                                             "custom-domain operator: TensorRT needs a plugin for it"))
                continue
            if op in _UNSUPPORTED_SET or op not in _SUPPORTED_SET:
                issues.append(PreflightIssue(node.name, op, "not supported by TensorRT's ONNX parser"))
                continue
            attrs = _attrs(onnx, node)
            check = _CHECKS.get(op)
            for reason in (check(node, attrs, g) if check else ()):
                issues.append(PreflightIssue(node.name, op, reason))
            for value in attrs.values():
                for sub in value if isinstance(value, list) else [value]:
                    if hasattr(sub, "node") and hasattr(sub, "initializer"):
                        walk(sub, g)

    walk(model.graph, None)
    return PreflightResult(nodes=count, opset=opset, ops=ops, issues=tuple(issues), warnings=tuple(warnings))
