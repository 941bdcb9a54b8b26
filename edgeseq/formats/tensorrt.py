"""TensorRT: ONNX -> engine with an optimization profile, a JSON sidecar, and a runner on torch CUDA buffers.

Two halves, so that most of it is useful (and tested) on machines without TensorRT:

* Without TensorRT (this project's machines, or a workstation preparing a Jetson build): `export` writes the
  TensorRT-ready ONNX, runs a *preflight* against the ONNX parser's documented operator support (naming every node
  it would reject), and writes a build plan (JSON) holding the optimization profile, the precision flags and the
  exact `trtexec` command line that builds the engine on the target. The Artifact then points at the ONNX and says
  in its notes that no engine was built here; nothing claims parity for it.
* With TensorRT and a CUDA GPU: the same ONNX goes through `OnnxParser` -> `BuilderConfig` -> a serialized engine
  plus a sidecar (TensorRT version, GPU, compute capability, profile, edgeseq model). The runner refuses an engine
  whose sidecar names another GPU or TensorRT version (engines are not portable), sets the input shapes on every
  call and runs `execute_async_v3` on a torch CUDA stream with torch tensors as buffers (no pycuda).

Precision (TensorRT 10 and 11 differ here; both are handled):
* fp32 - TF32 is switched off (`--noTF32`), so fp32 means fp32 as in the other runtimes.
* fp16 - TensorRT 10: the fp32 ONNX with the FP16 builder flag (`--fp16`). TensorRT 11 removed the weak-typing
  flags: it builds fp16 only from an ONNX whose tensors are fp16 (pass one with `TensorRTOptions(onnx_path=...)`).
* int8-static - explicit quantization only: an ONNX with QuantizeLinear/DequantizeLinear nodes (made by the
  quantization work, or passed with `onnx_path`), built as a strongly typed network (`--stronglyTyped`), which is
  the documented path for Q/DQ models on TensorRT 10 and the only one on 11. Implicit calibration is not offered.
"""

from __future__ import annotations

import dataclasses

import json
import re
import shlex
import shutil
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from .._lazy import available, require
from .._version import __version__
from ..artifact import Artifact, atomic_path, sha256_file, write_text_atomic
from ..enums import Format, Precision
from ..errors import ArtifactError, ExportError, InputError, RuntimeFailure, UnsupportedError
from ..runner import Runner
from ..tensors import TensorSpec

if TYPE_CHECKING:  # pragma: no cover
    from .onnx import OnnxOptions

EXTRA = "tensorrt"
PRECISIONS = (Precision.FP32, Precision.FP16, Precision.INT8_STATIC)
DEFAULT_MAX_BATCH = 16  # the profile's largest batch unless the ModelSpec sweeps a larger one
DEFAULT_MAX_TIME = 1000  # the profile's longest sequence unless the ModelSpec sweeps a longer one
SIDECAR_SCHEMA = "edgeseq.tensorrt-engine/1"
PLAN_SCHEMA = "edgeseq.tensorrt-build/1"
TIMING_CACHE_NAME = "tensorrt.timing.cache"
ONNX_SUFFIX, PLAN_SUFFIX, SIDECAR_SUFFIX = ".trt.onnx", ".trt-build.json", ".json"
# the onnx-tensorrt operator table for TensorRT 10.0 documents opsets 9..20 (later 10.x releases add newer ones)
DOCUMENTED_OPSETS = (9, 20)
NO_ENGINE = "no TensorRT engine was built here"  # how a plan-only artifact's first note begins


class EngineBuild(str, Enum):
    AUTO = "auto"  # build the engine when TensorRT and a CUDA GPU are here, else write the plan only
    ALWAYS = "always"  # fail (MissingExtraError / UnsupportedError) when the engine cannot be built here
    NEVER = "never"  # plan only, even where TensorRT is installed (e.g. preparing a Jetson build)


@dataclass(frozen=True)
class ShapeRange:
    """One input's optimization-profile range: the engine accepts any shape between min and max per axis."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def to_dict(self) -> dict:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_dict(cls, d: dict) -> "ShapeRange":
        return cls(tuple(d["min"]), tuple(d["opt"]), tuple(d["max"]))

    def contains(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == len(self.min) and all(lo <= s <= hi for lo, s, hi in zip(self.min, shape, self.max))

    def describe(self) -> str:
        return "x".join(str(lo) if lo == hi else f"{lo}..{hi}" for lo, hi in zip(self.min, self.max))


@dataclass(frozen=True)
class TensorRTOptions:
    onnx: OnnxOptions | None = None  # OnnxOptions for the ONNX export (None: the ONNX exporter's defaults)
    shapes: dict[str, ShapeRange] | None = None  # overrides of the profile taken from the ModelSpec
    onnx_path: str | Path | None = None  # build from this ONNX instead of exporting one (e.g. a Q/DQ int8 model)
    timing_cache: str | Path | None = None  # default: tensorrt.timing.cache beside the engine
    workspace_mib: int | None = None  # builder workspace limit (None: TensorRT's default, the device's memory)
    engine: EngineBuild = EngineBuild.AUTO


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


# ---- the optimization profile ----------------------------------------------------------------------------------------

_SHAPES = re.compile(r"^([^=\s]+)=(\d+(?:x\d+)*):(\d+(?:x\d+)*):(\d+(?:x\d+)*)$")


def default_profile(spec) -> dict[str, ShapeRange]:
    """min/opt/max per input from the ModelSpec: batch 1 / 1 / max(16, its sweep), time 1 / its default T /
    max(1000, its sweep); fixed axes stay fixed."""
    from ..models.spec import BATCH, TIME

    batch = (1, 1, max(DEFAULT_MAX_BATCH, *spec.batch_sweep))
    times = (1, spec.default_time, max(DEFAULT_MAX_TIME, spec.default_time, *spec.time_sweep))
    sizes = getattr(spec, "_axis_sizes", {})
    profile = {}
    for t in spec.inputs:
        lo, opt, hi = [], [], []
        for d in t.shape:
            if isinstance(d, int):
                rng = (d, d, d)
            elif d == BATCH:
                rng = batch
            elif d == TIME:
                rng = times
            elif d in sizes:  # another named axis of a user module: fixed at its example size
                rng = (sizes[d],) * 3
            else:
                raise InputError(f"{spec.name}: input {t.name!r} has a free axis {d!r} with no size; pass --shapes")
            lo.append(rng[0]), opt.append(rng[1]), hi.append(rng[2])
        profile[t.name] = ShapeRange(tuple(lo), tuple(opt), tuple(hi))
    return profile


def parse_profile(items: Iterable[str] | dict | None) -> dict[str, ShapeRange]:
    """'features=1x1x128:1x200x128:16x1000x128' (NAME=MIN:OPT:MAX) -> {'features': ShapeRange(...)}."""
    if not items:
        return {}
    if isinstance(items, dict):
        return {k: v if isinstance(v, ShapeRange) else _shape_range(k, v) for k, v in items.items()}
    if isinstance(items, str):
        items = [items]  # one NAME=MIN:OPT:MAX, not its characters
    out = {}
    for text in items:
        match = _SHAPES.match(str(text).strip())
        if not match:
            raise InputError(f"bad --shapes {text!r}: expected NAME=MIN:OPT:MAX with DxDxD shapes, "
                             "e.g. features=1x1x128:1x200x128:16x1000x128")
        dims = [tuple(int(d) for d in g.split("x")) for g in match.groups()[1:]]
        out[match.group(1)] = ShapeRange(*dims)
    return out


def _shape_range(name, value) -> ShapeRange:
    """{name: (min, opt, max)} from the API: three shapes of integers, or one line saying what was expected."""
    from .._checks import is_integer

    try:
        shapes = [tuple(shape) for shape in value]
    except TypeError:  # an int where a shape was expected
        shapes = []
    ok = isinstance(name, str) and len(shapes) == 3 and all(
        is_integer(d) for shape in shapes for d in shape)
    if not ok:
        raise InputError(f"shapes[{name!r}] must be three shapes (min, opt, max), e.g. "
                         f"((1, 1, 128), (1, 200, 128), (16, 1000, 128)); got {value!r}")
    return ShapeRange(*(tuple(int(d) for d in shape) for shape in shapes))


def resolve_profile(spec, shapes: dict[str, ShapeRange] | None) -> dict[str, ShapeRange]:
    """The ModelSpec's profile with --shapes overrides, checked: names, ranks, fixed dims and min <= opt <= max."""
    profile = default_profile(spec)
    for name, rng in (shapes or {}).items():
        if name not in profile:
            raise InputError(f"--shapes names {name!r}, which is not an input of {spec.name} ({list(profile)})")
        declared = next(t for t in spec.inputs if t.name == name)
        if not len(rng.min) == len(rng.opt) == len(rng.max) == len(declared.shape):
            raise InputError(f"--shapes {name}: min, opt and max must all have rank {len(declared.shape)} "
                             f"({declared.describe()})")
        for axis, want in enumerate(declared.shape):
            if isinstance(want, int) and {rng.min[axis], rng.opt[axis], rng.max[axis]} != {want}:
                raise InputError(f"--shapes {name}: axis {axis} is fixed at {want} in {declared.describe()}")
        if not all(1 <= a <= b <= c for a, b, c in zip(rng.min, rng.opt, rng.max)):
            raise InputError(f"--shapes {name}: every axis needs 1 <= min <= opt <= max (got {rng.describe()}, "
                             f"opt {'x'.join(map(str, rng.opt))})")
        profile[name] = rng
    return profile


# ---- the build plan: what is built and how (also the trtexec command for targets that build their own) ------------


@dataclass(frozen=True)
class BuildPlan:
    model: str
    precision: str
    onnx: str  # file names, relative to the folder that holds the plan
    engine: str
    timing_cache: str
    profile: dict[str, ShapeRange]
    strongly_typed: bool
    set_flags: tuple[str, ...]  # BuilderFlag names switched on
    cleared_flags: tuple[str, ...]  # BuilderFlag names switched off
    workspace_mib: int | None = None
    notes: tuple[str, ...] = ()

    def trtexec_argv(self) -> list[str]:
        def spec(which: str) -> str:
            return ",".join(f"{_trtexec_name(n)}:{'x'.join(map(str, getattr(r, which)))}"
                            for n, r in self.profile.items())

        argv = ["trtexec", f"--onnx={self.onnx}", f"--saveEngine={self.engine}"]
        if any(r.min != r.max for r in self.profile.values()):
            argv += [f"--minShapes={spec('min')}", f"--optShapes={spec('opt')}", f"--maxShapes={spec('max')}"]
        argv.append(f"--timingCacheFile={self.timing_cache}")
        if self.strongly_typed:
            argv.append("--stronglyTyped")
        argv += [f"--{_TRTEXEC_FLAGS[f]}" for f in self.set_flags]
        if "TF32" in self.cleared_flags:
            argv.append("--noTF32")
        if self.workspace_mib:
            argv.append(f"--memPoolSize=workspace:{self.workspace_mib}")
        return argv

    def trtexec_command(self) -> str:
        return " ".join(shlex.quote(a) for a in self.trtexec_argv())

    def to_dict(self) -> dict:
        return {
            "schema": PLAN_SCHEMA,
            "model": self.model,
            "precision": self.precision,
            "onnx": self.onnx,
            "engine": self.engine,
            "timing_cache": self.timing_cache,
            "profile": {n: r.to_dict() for n, r in self.profile.items()},
            "network": {"strongly_typed": self.strongly_typed},
            "builder_flags": {"set": list(self.set_flags), "cleared": list(self.cleared_flags)},
            "workspace_mib": self.workspace_mib,
            "trtexec": self.trtexec_command(),
            "notes": list(self.notes),
        }


_TRTEXEC_FLAGS = {"FP16": "fp16", "INT8": "int8"}


def _trtexec_name(name: str) -> str:
    # trtexec splits shape specs on ':' and ','; names holding them are wrapped in single quotes, as its help says
    return f"'{name}'" if any(c in name for c in ":,") else name


def make_plan(spec_name: str, precision: Precision, onnx_name: str, engine_name: str, profile: dict[str, ShapeRange],
              *, fp16_onnx: bool = False, timing_cache: str = TIMING_CACHE_NAME,
              workspace_mib: int | None = None) -> BuildPlan:
    """The build for one precision (TensorRT 10 flags; the notes say what changes on 11)."""
    notes = []
    if precision is Precision.FP32:
        strongly, set_flags, cleared = False, (), ("TF32",)
        notes.append("fp32: TF32 is switched off (--noTF32) so results match the PyTorch fp32 original")
    elif precision is Precision.FP16 and not fp16_onnx:
        strongly, set_flags, cleared = False, ("FP16",), ()
        notes.append("fp16 from the fp32 ONNX with the FP16 builder flag (--fp16): TensorRT 10.x. TensorRT 11 "
                     "removed the flag; there, build from an fp16 ONNX (e.g. ModelOpt AutoCast) without --fp16")
    elif precision is Precision.FP16:
        strongly, set_flags, cleared = True, (), ()
        notes.append("fp16 from an ONNX typed in fp16: a strongly typed build (TensorRT 10 and 11)")
    elif precision is Precision.INT8_STATIC:
        strongly, set_flags, cleared = True, (), ("TF32",)
        notes.append("int8 from the ONNX's explicit QuantizeLinear/DequantizeLinear nodes, built strongly typed "
                     "(--stronglyTyped; the layers outside Q/DQ pairs stay fp32). On TensorRT 10 the weakly typed "
                     "equivalent is --int8; TensorRT 11 removed --int8")
    else:
        raise UnsupportedError(f"TensorRT has no {precision.value} build")
    notes.append("run the trtexec command from the folder that holds these files; engines are tied to the GPU "
                 "and TensorRT version that build them")
    return BuildPlan(model=spec_name, precision=precision.value, onnx=onnx_name, engine=engine_name,
                     timing_cache=timing_cache, profile=profile, strongly_typed=strongly, set_flags=set_flags,
                     cleared_flags=cleared, workspace_mib=workspace_mib, notes=tuple(notes))


# ---- export ---------------------------------------------------------------------------------------------------------


def check_precision(precision: Precision, options: TensorRTOptions | None = None) -> None:
    precision = Precision.parse(precision)
    if precision not in PRECISIONS:
        have = ", ".join(p.value for p in PRECISIONS)
        raise UnsupportedError(f"TensorRT export at {precision.value} is not available (it has: {have}; int8 comes "
                               "from explicit Q/DQ nodes, there is no dynamic int8 in TensorRT)")
    if precision is Precision.INT8_STATIC and not (options and options.onnx_path):
        from . import onnx as onnx_format

        if precision not in onnx_format.PRECISIONS:
            raise UnsupportedError(
                "TensorRT int8 engines are built from an ONNX with explicit Q/DQ nodes, and this build's ONNX "
                "exporter does not make int8-static yet (the quantization work); pass a Q/DQ ONNX with "
                "TensorRTOptions(onnx_path=...)"
            )


def can_build() -> tuple[bool, str]:
    """Whether an engine can be built here, and if not, why (one phrase)."""
    if not available("tensorrt"):
        return False, "the tensorrt package is not installed"
    import torch

    if not torch.cuda.is_available():
        return False, "torch sees no CUDA GPU"
    return True, ""


def companion_paths(engine_path: str | Path) -> dict[str, Path]:
    engine_path = Path(engine_path)
    stem = engine_path.name[: -len(engine_path.suffix)] if engine_path.suffix else engine_path.name
    return {
        "onnx": engine_path.with_name(stem + ONNX_SUFFIX),
        "plan": engine_path.with_name(stem + PLAN_SUFFIX),
        "sidecar": engine_path.with_name(engine_path.name + SIDECAR_SUFFIX),
    }


def export(spec, out_path: str | Path, *, precision=Precision.FP32, options: TensorRTOptions | None = None,
           weights=None) -> Artifact:
    """spec -> TensorRT-ready ONNX + build plan (+ engine and sidecar where TensorRT and a GPU are here).

    Without an engine, the Artifact points at the ONNX and its first note says that no engine was built here and
    gives the trtexec command; with one, it points at the engine. Files of a failed export are removed.
    """
    options = options or TensorRTOptions()
    precision = Precision.parse(precision)
    check_precision(precision, options)
    out_path = Path(out_path)
    profile = resolve_profile(spec, options.shapes)
    buildable, why_not = can_build()
    if options.engine is EngineBuild.ALWAYS and not buildable:
        require("tensorrt", EXTRA)  # MissingExtraError naming the pip command, when that is what is missing
        raise UnsupportedError(f"cannot build a TensorRT engine here: {why_not}")
    if options.engine is EngineBuild.NEVER:
        buildable, why_not = False, "EngineBuild.NEVER was asked for"
    paths = companion_paths(out_path)
    fresh = [p for p in (*paths.values(), out_path) if not p.exists()]
    try:
        return _export(spec, out_path, paths, precision, options, weights, profile, buildable, why_not)
    except BaseException:
        for path in fresh:  # what this call created; files from an earlier export stay
            _remove(path)
        raise


def _export(spec, out_path: Path, paths: dict[str, Path], precision: Precision, options: TensorRTOptions, weights,
            profile: dict[str, ShapeRange], build: bool, why_not: str) -> Artifact:
    from . import onnx as onnx_format

    started = time.perf_counter()
    # 1. the ONNX that TensorRT will parse: exported here, or a given one (e.g. Q/DQ int8) copied beside the plan
    if options.onnx_path:
        source = Path(options.onnx_path)
        if not source.is_file():
            raise ArtifactError(f"onnx_path {str(source)!r} does not exist or is not a file")
        with atomic_path(paths["onnx"]) as tmp:
            shutil.copyfile(source, tmp)
        weights_sha = _onnx_metadata(paths["onnx"]).get("edgeseq.weights_sha256", "")
        opset = _onnx_opset(paths["onnx"])
    else:
        onnx_precision = Precision.INT8_STATIC if precision is Precision.INT8_STATIC else Precision.FP32
        onnx_options = options.onnx or onnx_format.OnnxOptions()
        if onnx_precision is Precision.INT8_STATIC and onnx_options.quant is None:
            from ..quantize import resolve_config

            onnx_options = dataclasses.replace(onnx_options, quant=resolve_config(Format.TENSORRT, onnx_precision))
        onnx_art = onnx_format.export(spec, paths["onnx"], precision=onnx_precision, options=onnx_options,
                                      weights=weights)
        weights_sha, opset = onnx_art.weights_sha256, onnx_art.opset

    # 2. preflight: every node the parser would reject is named now, not after a build on the target
    report = preflight(paths["onnx"])
    if not report.ok:
        raise ExportError(f"{spec.name}: {report.summary()}")
    if precision is Precision.INT8_STATIC and not report.quantized:
        raise ExportError(f"{spec.name}: an int8 TensorRT build needs an ONNX with QuantizeLinear/DequantizeLinear "
                          "nodes (explicit quantization); this one has none")

    # 3. the plan, always written: it records how the engine was built, or is to be built on the target
    cache = Path(options.timing_cache) if options.timing_cache else out_path.parent / TIMING_CACHE_NAME
    cache_ref = cache.name if cache.parent == out_path.parent else str(cache)
    plan = make_plan(spec.name, precision, paths["onnx"].name, out_path.name, profile,
                     fp16_onnx=is_fp16_onnx(paths["onnx"]), timing_cache=cache_ref,
                     workspace_mib=options.workspace_mib)
    onnx_sha = sha256_file(paths["onnx"])
    plan_dict = {**plan.to_dict(), "onnx_sha256": onnx_sha, "weights_sha256": weights_sha,
                 "preflight": report.to_dict(), "engine_built": build, "why_no_engine": None if build else why_not}
    notes = [f"preflight: {report.summary()}", *(f"preflight warning: {w}" for w in report.warnings)]
    common = dict(format=Format.TENSORRT.value, precision=precision.value, model=spec.name, opset=opset,
                  weights_sha256=weights_sha, inputs=tuple(t.to_dict() for t in spec.inputs),
                  outputs=tuple(t.to_dict() for t in spec.outputs))

    if not build:
        write_text_atomic(paths["plan"], json.dumps(plan_dict, indent=2) + "\n")
        notes.insert(0, f"{NO_ENGINE} ({why_not}): wrote {paths['onnx'].name} and {paths['plan'].name}; build the "
                        f"engine on the target with: {plan.trtexec_command()}")
        return Artifact(path=str(paths["onnx"]), sha256=onnx_sha, size_bytes=paths["onnx"].stat().st_size,
                        exporter="edgeseq tensorrt plan (ONNX + trtexec command; no engine built)",
                        export_seconds=round(time.perf_counter() - started, 3), notes=tuple(notes), **common)

    # 4. the engine, its sidecar and the updated timing cache
    built = build_engine(paths["onnx"], out_path, plan, timing_cache=cache)
    sidecar = {
        "schema": SIDECAR_SCHEMA,
        **built,
        "precision": precision.value,
        "profile": {n: r.to_dict() for n, r in profile.items()},
        "model": spec.name,
        "weights_sha256": weights_sha,
        "onnx_sha256": onnx_sha,
        "engine_sha256": sha256_file(out_path),
        "edgeseq_version": __version__,
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "inputs": [t.to_dict() for t in spec.inputs],
        "outputs": [t.to_dict() for t in spec.outputs],
    }
    write_text_atomic(paths["sidecar"], json.dumps(sidecar, indent=2) + "\n")
    write_text_atomic(paths["plan"], json.dumps(plan_dict, indent=2) + "\n")
    sm = built["compute_capability"].replace(".", "")
    return Artifact(path=str(out_path), sha256=sidecar["engine_sha256"], size_bytes=out_path.stat().st_size,
                    exporter=f"TensorRT {built['tensorrt_version']} builder ({built['gpu_name']}, sm_{sm})",
                    export_seconds=round(time.perf_counter() - started, 3), parent=onnx_sha,
                    notes=(f"sidecar {paths['sidecar'].name}; built from {paths['onnx'].name}", *notes), **common)


def _remove(path: Path) -> None:
    if path.exists():
        path.unlink()


def _onnx_metadata(path: Path) -> dict[str, str]:
    from .onnx import read_metadata

    return read_metadata(path)


def _onnx_opset(path: Path) -> int | None:
    onnx = require("onnx", "onnx")
    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def is_fp16_onnx(path: Path) -> bool:
    """True when the model's float weights are fp16 (it was converted to fp16 before the build)."""
    onnx = require("onnx", "onnx")
    model = onnx.load(str(path), load_external_data=False)
    floats = [i.data_type for i in model.graph.initializer if i.data_type in (1, _ONNX_FLOAT16)]
    return bool(floats) and floats.count(_ONNX_FLOAT16) > floats.count(1)


# ---- building (needs TensorRT and a CUDA GPU) ------------------------------------------------------------------------


def this_machine(device: str | None = None) -> dict[str, str]:
    """TensorRT version, GPU name and compute capability here (of `device`, default the current one): what an
    engine is tied to."""
    trt = require("tensorrt", EXTRA)
    import torch

    if not torch.cuda.is_available():
        raise UnsupportedError("TensorRT engines run on a CUDA GPU, and torch sees none here")
    index = torch.device(device).index if device and ":" in device else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    return {"tensorrt_version": str(trt.__version__), "gpu_name": str(props.name),
            "compute_capability": f"{props.major}.{props.minor}"}


def _logger(trt):
    """A TensorRT logger that keeps errors, so a failed parse or build can say why in one line."""

    class Keep(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(str(msg).strip())

    return Keep()


def build_engine(onnx_path: Path, engine_path: Path, plan: BuildPlan, *, timing_cache: Path | None = None) -> dict:
    """OnnxParser -> network -> BuilderConfig (profile, precision flags, timing cache) -> serialized engine.

    Writes the engine atomically and the updated timing cache; returns what the sidecar records about the build.
    """
    trt = require("tensorrt", EXTRA)
    machine = this_machine()
    logger = _logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    if plan.strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = []
        for i in range(parser.num_errors):
            err = parser.get_error(i)
            where = " ".join(x for x in (_call(err, "node_name"), _call(err, "node_operator")) if x)
            errors.append(f"{where}: {err.desc()}" if where else str(err.desc()))
        raise ExportError(f"TensorRT's ONNX parser rejected {onnx_path.name}: " + "; ".join(errors[:3]))

    config = builder.create_builder_config()
    for name in plan.set_flags:
        flag = getattr(trt.BuilderFlag, name, None)
        if flag is None:
            raise UnsupportedError(
                f"TensorRT {trt.__version__} has no {name} builder flag (TensorRT 11 builds strongly typed networks "
                f"only): build {plan.precision} from an ONNX typed in {plan.precision} "
                "(TensorRTOptions(onnx_path=...))"
            )
        config.set_flag(flag)
    for name in plan.cleared_flags:
        config.clear_flag(getattr(trt.BuilderFlag, name))
    if plan.workspace_mib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_mib << 20)

    profile = builder.create_optimization_profile()
    for name, rng in plan.profile.items():
        profile.set_shape(name, rng.min, rng.opt, rng.max)
    if config.add_optimization_profile(profile) < 0:
        raise ExportError(f"TensorRT rejected the optimization profile {_profile_text(plan.profile)}")

    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        why = "; ".join(logger.errors[-3:]) or "no error message"
        raise ExportError(f"TensorRT could not build an engine from {onnx_path.name}: {why}")
    with atomic_path(engine_path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(serialized)  # IHostMemory exposes the buffer protocol
    if timing_cache is not None:
        with atomic_path(timing_cache) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(config.get_timing_cache().serialize())
    return {**machine, "network": {"strongly_typed": plan.strongly_typed},
            "builder_flags": {"set": list(plan.set_flags), "cleared": list(plan.cleared_flags)}}


def _call(obj, method: str) -> str:
    fn = getattr(obj, method, None)
    try:
        return str(fn()) if fn else ""
    except Exception:  # older bindings: the method exists on some error kinds only
        return ""


def _profile_text(profile: dict[str, ShapeRange]) -> str:
    return ", ".join(f"{n}={r.describe()}" for n, r in profile.items())


# ---- the sidecar: engines are not portable --------------------------------------------------------------------------


def read_sidecar(engine_path: str | Path) -> dict | None:
    """The JSON written beside an engine at build time, or None when there is none (e.g. an engine from trtexec)."""
    path = companion_paths(engine_path)["sidecar"]
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"cannot read the engine sidecar {path.name}: {exc}") from None
    keys = ("tensorrt_version", "gpu_name", "compute_capability")
    if not isinstance(data, dict) or data.get("schema") != SIDECAR_SCHEMA or any(k not in data for k in keys):
        raise ArtifactError(f"{path.name} is not an edgeseq engine sidecar ({SIDECAR_SCHEMA!r} with "
                            "tensorrt_version, gpu_name and compute_capability expected)")
    return data


def check_sidecar(sidecar: dict, here: dict, engine_name: str) -> None:
    """Refuse, in one line, an engine built on another GPU model or compute capability or another TensorRT."""
    fields = (("tensorrt_version", "TensorRT {}"), ("compute_capability", "compute capability {}"),
              ("gpu_name", "{}"))
    diffs = [(fmt.format(sidecar[k]), fmt.format(here[k])) for k, fmt in fields if str(sidecar[k]) != str(here[k])]
    if diffs:
        built = ", ".join(b for b, _ in diffs)
        now = ", ".join(h for _, h in diffs)
        model = sidecar.get("model", "MODEL")
        raise ArtifactError(
            f"{engine_name} was built for {built} but this machine has {now}; TensorRT engines are not portable: "
            f"rebuild it here (edgeseq export {model} --format tensorrt -p {sidecar.get('precision', 'fp32')})"
        )


# ---- runtime --------------------------------------------------------------------------------------------------------


def runtime_devices() -> list[str]:
    """['cuda'] where an engine can be built and run here (TensorRT + a CUDA GPU), else none."""
    return ["cuda"] if can_build()[0] else []


class TensorRTRunner(Runner):
    format = Format.TENSORRT

    def __init__(self, path: str | Path, *, device: str | None = None, threads: int | None = None):
        if device is not None and not (device.startswith("cuda") or device == "tensorrt"):
            raise UnsupportedError(f"TensorRT engines run on a CUDA GPU, not on {device!r}")
        super().__init__(device="cuda" if device in (None, "tensorrt") else device, threads=threads)
        self.path = Path(path)
        self._sidecar: dict | None = None
        self.engine = self.context = self._stream = None
        self._profile: dict[str, ShapeRange] = {}
        self._dtypes: dict[str, object] = {}

    @property
    def runtime(self) -> str:
        return "tensorrt-cuda"

    @property
    def metadata(self) -> dict[str, str]:
        side = self._sidecar if self._sidecar is not None else (read_sidecar(self.path) or {})
        keys = (("model", "edgeseq.model"), ("precision", "edgeseq.precision"),
                ("weights_sha256", "edgeseq.weights_sha256"))
        return {meta: str(side[k]) for k, meta in keys if side.get(k)}

    def _load(self):
        if not self.path.is_file():
            raise ArtifactError(f"{str(self.path)!r} does not exist or is not a file")
        sidecar = read_sidecar(self.path)  # a malformed sidecar fails before anything heavy loads
        here = this_machine(self.device)  # MissingExtraError without TensorRT, UnsupportedError without a GPU
        if sidecar is not None:
            check_sidecar(sidecar, here, self.path.name)
        self._sidecar = sidecar
        trt = require("tensorrt", EXTRA)
        import torch

        self._torch = torch
        self._device = torch.device(self.device)
        logger = self._logger = _logger(trt)  # TensorRT keeps a pointer to it: it must outlive the runtime
        self._trt_runtime = trt.Runtime(logger)
        engine = self._trt_runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            why = "; ".join(logger.errors[-2:]) or "no error message"
            raise ArtifactError(
                f"TensorRT {trt.__version__} cannot load {self.path.name} ({why[:200]}); engines only load with the "
                "TensorRT version and GPU that built them" + ("" if sidecar else " (this engine has no sidecar)")
            )
        self.engine = engine
        self.context = engine.create_execution_context()
        named = {t["name"]: t for t in (sidecar or {}).get("inputs", [])}
        inputs, outputs = [], []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            self._dtypes[name] = dtype
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                dims = tuple(engine.get_tensor_shape(name))
                axis_names = named.get(name, {}).get("shape", [None] * len(dims))
                shape = tuple(d if d >= 0 else (axis_names[k] if k < len(axis_names) and
                                                isinstance(axis_names[k], str) else None)
                              for k, d in enumerate(dims))
                inputs.append(TensorSpec(name, shape, dtype.name))
                lo, opt, hi = (tuple(s) for s in engine.get_tensor_profile_shape(name, 0))
                self._profile[name] = ShapeRange(lo, opt, hi)
            else:
                outputs.append(name)
        self._stream = torch.cuda.Stream(device=self._device)
        return tuple(inputs), tuple(outputs)

    def _bind(self, feed) -> tuple[list, dict]:
        """The feed copied to the GPU on the engine's stream, each input's shape set, outputs allocated, every
        address handed to the context: (input tensors, {output name: tensor}). Callers keep both alive until the
        enqueued work is done."""
        torch = self._torch
        for name, rng in self._profile.items():
            shape = tuple(feed[name].shape)
            if not rng.contains(shape):
                raise InputError(
                    f"input {name!r} has shape {list(shape)}, outside this engine's profile {rng.describe()}; "
                    f"rebuild with --shapes {name}=MIN:OPT:MAX to cover it"
                )
        held = []
        with torch.cuda.device(self._device), torch.cuda.stream(self._stream):
            for name in self._profile:
                tensor = torch.from_numpy(np.ascontiguousarray(feed[name])).to(self._device)
                held.append(tensor)
                if not self.context.set_input_shape(name, tuple(tensor.shape)):
                    raise InputError(f"TensorRT refused input shape {list(tensor.shape)} for {name!r}")
                self.context.set_tensor_address(name, tensor.data_ptr())
            outs = {}
            for name in self._outputs:
                shape = tuple(self.context.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise RuntimeFailure(f"output {name!r} has a data-dependent shape {list(shape)}, which this "
                                         "runner does not support")
                out = torch.empty(shape, dtype=_TORCH_DTYPES[self._dtypes[name].name](torch), device=self._device)
                self.context.set_tensor_address(name, out.data_ptr())
                outs[name] = out
        return held, outs

    def _enqueue(self, held: list) -> None:
        if not self.context.execute_async_v3(self._stream.cuda_stream):
            raise RuntimeFailure(f"TensorRT failed to run {self.path.name} at "
                                 f"{', '.join(f'{n}={list(t.shape)}' for n, t in zip(self._profile, held))}")

    def _infer(self, feed):
        torch = self._torch
        held, outs = self._bind(feed)
        with torch.cuda.device(self._device), torch.cuda.stream(self._stream):
            self._enqueue(held)
            host = {name: out.to("cpu") for name, out in outs.items()}
        self._stream.synchronize()
        return {name: t.float().numpy() if t.dtype == torch.float16 else t.numpy() for name, t in host.items()}

    def timed_runs(self, feed, *, warmup: int, iterations: int, budget_s: float | None):
        """Device time from CUDA events on the engine's stream after warm-up, the inputs bound once (as trtexec
        times an engine), and the end-to-end p50 with host copies in the note, like the PyTorch CUDA rows."""
        from ..latency import cuda_event_times, device_timings, time_locally
        from ..tensors import validate_feed

        self.load()
        held, outs = self._bind(validate_feed(self._inputs, feed))  # both stay alive while the timed work runs
        with self._torch.cuda.device(self._device):
            device = cuda_event_times(lambda: self._enqueue(held), stream=self._stream, warmup=warmup,
                                      iterations=iterations, budget_s=budget_s)
        e2e = time_locally(self, feed, warmup=1, iterations=max(5, len(device) // 5), budget_s=budget_s)
        return device_timings(device, e2e, "device time from CUDA events on the engine's stream, inputs already "
                                           "on the GPU")

    def synchronize(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()

    def _close(self):
        if self._stream is not None:
            self._stream.synchronize()
        self.context = self.engine = self._stream = None
        self._profile, self._dtypes = {}, {}


_TORCH_DTYPES: dict[str, Callable] = {
    "float32": lambda t: t.float32, "float16": lambda t: t.float16, "int32": lambda t: t.int32,
    "int64": lambda t: t.int64, "int8": lambda t: t.int8, "uint8": lambda t: t.uint8, "bool": lambda t: t.bool,
}


def runner(path, *, device=None, threads=None) -> TensorRTRunner:
    return TensorRTRunner(path, device=device, threads=threads)


__all__ = [
    "BuildPlan", "EngineBuild", "PreflightIssue", "PreflightResult", "ShapeRange", "TensorRTOptions", "TensorRTRunner",
    "build_engine", "can_build", "check_precision", "check_sidecar", "default_profile", "export", "make_plan",
    "parse_profile", "preflight", "read_sidecar", "resolve_profile", "runner", "runtime_devices", "this_machine",
]
