"""ONNX: export with torch.onnx and run with ONNX Runtime.

Exporter choice (measured on torch 2.13): the TorchScript-based exporter (dynamo=False) keeps the time axis
symbolic through nn.GRU (one ONNX GRU op) and nn.MaxPool1d; the torch.export-based exporter specializes T there.
TorchScript is deprecated upstream, so it is the default *deliberately* and the dynamo path stays selectable; either
way the exported graph is checked (declared axes must stay symbolic, and ONNX Runtime must run it at another batch
and T) and a fixed axis is an ExportError, never a surprise at run time.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re
import tempfile
import time
import warnings
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np

from .._lazy import require
from .._quiet import library_stderr_quiet
from .._version import __version__
from ..artifact import artifact_for, atomic_path, sha256_file
from ..enums import Format, Precision
from ..errors import ArtifactError, EdgeseqError, ExportError, RuntimeFailure, UnsupportedError
from ..runner import Runner
from ..tensors import TensorSpec

EXTRA = "onnx"
PROBE_BATCH, PROBE_TIME = 3, 50
PRECISIONS = (Precision.FP32, Precision.FP16, Precision.INT8_DYNAMIC, Precision.INT8_STATIC)
_EXPORT_BATCH, _EXPORT_TIME = 2, 37  # export-time example: neither 1 nor a sweep value, so nothing gets baked in
_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}
_PROVIDER_NAMES = {
    "TensorrtExecutionProvider": "tensorrt",
    "CUDAExecutionProvider": "cuda",
    "CPUExecutionProvider": "cpu",
}


def new_session(ort, model, options, providers):
    """ort.InferenceSession without onnxruntime's "EP Error ... Falling back and retrying" banner, which it prints
    to stdout when a session fails and it retries the same providers: the caller reports the error in one line."""
    with redirect_stdout(io.StringIO()):
        return ort.InferenceSession(model, sess_options=options, providers=providers)


def session_options(ort, threads: int | None):
    """The runner's session options: `threads` intra-op threads (None: onnxruntime's default), one inter-op thread
    (the graph is a chain), warnings and up. The stage profiler builds its session from these too."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


def load_error(exc: BaseException) -> str:
    """The first line of an onnxruntime error, loading or running a model (its message can itself be undecodable
    bytes)."""
    if isinstance(exc, UnicodeDecodeError):
        return "the file holds bytes that are not text where the model needs a name (corrupt or truncated?)"
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


class OnnxExporter(str, Enum):
    TORCHSCRIPT = "torchscript"
    DYNAMO = "dynamo"


@dataclass(frozen=True)
class OnnxOptions:
    opset: int = 17
    exporter: OnnxExporter = OnnxExporter.TORCHSCRIPT
    simplify: bool = True
    # fp16 / int8 only: a QuantConfig (None: the ONNX default for the precision, see edgeseq.quantize), feeds for
    # static calibration (None: the config's source), and an fp32 .onnx of the same model to derive from (None:
    # export one first; either way the derived artifact records the fp32 file's sha256 as its parent).
    quant: object | None = None
    calibration_data: tuple | None = field(default=None, compare=False, repr=False)
    parent: str | None = None


def export(spec, out_path: str | Path, *, precision=Precision.FP32, options: OnnxOptions = OnnxOptions(), weights=None):
    """spec -> .onnx with dynamic batch/time, simplified, stamped with edgeseq metadata; written atomically.

    fp16 / int8 artifacts are derived from the fp32 export (see export_derived)."""
    import torch

    onnx = require("onnx", EXTRA)
    precision = Precision.parse(precision)
    check_precision(precision)
    if precision is not Precision.FP32:
        return export_derived(spec, out_path, precision=precision, options=options, weights=weights)
    if not 13 <= options.opset <= 23:
        raise UnsupportedError(f"opset {options.opset} is outside the range this exporter supports (13..23)")
    from ..models.weights import state_dict_sha256

    module = spec.build(weights)
    batch = _EXPORT_BATCH if "batch" in spec.inputs[0].shape else None
    feed = spec.example_inputs(batch=batch or 1, time=_EXPORT_TIME if spec.has_dynamic_time else None, source="random")
    args = tuple(torch.from_numpy(feed[name]) for name in spec.input_names)
    out_path = Path(out_path)
    started = time.perf_counter()
    with atomic_path(out_path) as tmp:
        _torch_export(torch, module, args, tmp, spec, options)
        try:
            model = onnx.load(str(tmp))
        except Exception as exc:  # the converter wrote something ONNX cannot parse
            raise ExportError(f"torch.onnx.export wrote an unreadable model: {exc}") from None
        if options.simplify:
            model = _simplify(model)
        _stamp(onnx, model, spec, state_dict_sha256(module), options, precision)
        _check_axes_symbolic(model, spec)
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
        _probe_dynamic_shapes(tmp, spec)
    elapsed = time.perf_counter() - started
    return artifact_for(
        out_path, Format.ONNX, precision, spec,
        opset=options.opset,
        weights_sha256=state_dict_sha256(module),
        exporter=f"torch.onnx ({options.exporter.value})" + (" + onnxslim" if options.simplify else ""),
        export_seconds=round(elapsed, 3),
    )


def check_precision(precision: Precision) -> None:
    if precision not in PRECISIONS:
        have = ", ".join(p.value for p in PRECISIONS)
        raise UnsupportedError(f"ONNX export at {precision.value} is not available in this build (it has: {have})")


def _torch_export(torch, module, args, path: Path, spec, options: OnnxOptions) -> None:
    kwargs = dict(
        input_names=spec.input_names,
        output_names=spec.output_names,
        opset_version=options.opset,
    )
    torch_onnx_log = logging.getLogger("torch.onnx")
    level = torch_onnx_log.level
    torch_onnx_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()), library_stderr_quiet():
            warnings.simplefilter("ignore")  # deprecation + tracer warnings: the shape probe below is the real check
            if options.exporter is OnnxExporter.TORCHSCRIPT:
                torch.onnx.export(
                    module, args, str(path), dynamo=False, dynamic_axes=spec.dynamic_axes, do_constant_folding=True,
                    **kwargs,
                )
            else:
                require("onnxscript", EXTRA)
                torch.onnx.export(module, args, str(path), dynamo=True, dynamic_axes=spec.dynamic_axes,
                                  external_data=False, **kwargs)
    except Exception as exc:
        raise ExportError(f"torch.onnx.export ({options.exporter.value}) failed for {spec.name}: {_why(exc)}") from None
    finally:
        torch_onnx_log.setLevel(level)


def _why(exc: Exception) -> str:
    """The informative line of a converter error (torch.export buries it under a generic preamble)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    for cause in (exc.__cause__,) if exc.__cause__ else ():
        text += "\n" + str(cause)
    specialized = re.search(r"inferred a static shape of (\d+) for dimension ([^\s]+)", text)
    if specialized:
        return (f"torch.export specialized a dynamic axis ({specialized.group(2).rstrip('.')} fixed to "
                f"{specialized.group(1)}); use the torchscript exporter, which keeps it dynamic")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


def _simplify(model):
    onnxslim = require("onnxslim", EXTRA)
    with redirect_stdout(io.StringIO()):
        return onnxslim.slim(model)


def _stamp(onnx, model, spec, weights_sha: str, options: OnnxOptions, precision: Precision) -> None:
    meta = {
        "edgeseq.version": __version__,
        "edgeseq.model": spec.name,
        "edgeseq.weights_sha256": weights_sha,
        "edgeseq.precision": precision.value,
        "edgeseq.exporter": options.exporter.value,
        "edgeseq.dynamic_axes": json.dumps(spec.dynamic_axes, sort_keys=True),
        **({"edgeseq.source": spec.source} if spec.source else {}),
    }
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    model.producer_name = "edgeseq"
    model.producer_version = __version__


def _check_axes_symbolic(model, spec) -> None:
    for value in list(model.graph.input) + list(model.graph.output):
        declared = spec.dynamic_axes.get(value.name, {})
        dims = value.type.tensor_type.shape.dim
        for axis, name in declared.items():
            if axis < len(dims) and dims[axis].HasField("dim_value"):
                raise ExportError(
                    f"the exported graph fixed the {name} axis of {value.name!r} to {dims[axis].dim_value}; "
                    f"this exporter specialized it (try --exporter torchscript)"
                )


def _probe_dynamic_shapes(path: Path, spec) -> None:
    """Run the fresh file once at another batch and T: a graph that baked in a size fails here, at export."""
    dynamic_batch = "batch" in spec.inputs[0].shape
    if not (spec.has_dynamic_time or dynamic_batch):
        return
    ort = require("onnxruntime", EXTRA)
    batch = PROBE_BATCH if dynamic_batch else 1
    feed = spec.example_inputs(batch=batch, time=PROBE_TIME if spec.has_dynamic_time else None, source="random")
    try:
        quiet = ort.SessionOptions()
        quiet.log_severity_level = 4
        session = new_session(ort, str(path), quiet, ["CPUExecutionProvider"])
        outs = session.run(None, feed)
    except Exception as exc:
        raise ExportError(
            f"the exported graph does not run at batch={batch} T={PROBE_TIME}: a dynamic axis was specialized "
            f"during export ({load_error(exc)[:200]})"
        ) from None
    for out_spec, out in zip(spec.outputs, outs):
        want = spec.shape_for(out_spec, batch, PROBE_TIME)
        if tuple(out.shape) != want:
            raise ExportError(
                f"output {out_spec.name!r} has shape {list(out.shape)} at batch={batch} T={PROBE_TIME}, "
                f"expected {list(want)}: an axis was specialized during export"
            )


# ---- runtime --------------------------------------------------------------------------------------------------------


def available_providers() -> list[str]:
    ort = require("onnxruntime", EXTRA)
    return list(ort.get_available_providers())


def providers_for(device: str | None) -> list[str]:
    """Auto (None): the best provider this onnxruntime build has; 'cpu' / 'cuda' / 'tensorrt' pick one."""
    have = available_providers()
    if device is None:
        order = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
        return [p for p in order if p in have]
    wanted = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
    provider = wanted.get(device.split(":")[0])
    if provider is None:
        raise UnsupportedError(f"unknown device {device!r} for onnxruntime; choose cpu, cuda or tensorrt")
    if provider not in have:
        raise UnsupportedError(
            f"this onnxruntime build has no {provider} (it has {', '.join(have)}); install onnxruntime-gpu for CUDA"
        )
    return [provider] + (["CPUExecutionProvider"] if provider != "CPUExecutionProvider" else [])


def runtime_devices() -> list[str]:
    """Devices this onnxruntime build can run on here, CPU first."""
    have = available_providers()
    return ["cpu"] + [d for d, p in (("cuda", "CUDAExecutionProvider"), ("tensorrt", "TensorrtExecutionProvider"))
                      if p in have]


class OnnxRunner(Runner):
    format = Format.ONNX

    def __init__(self, path: str | Path, *, device: str | None = None, threads: int | None = None):
        super().__init__(device=device, threads=threads)
        self.path = Path(path)
        self._requested = device
        self.session = None
        self._stream = None  # a torch.cuda.Stream handed to the CUDA / TensorRT provider, where torch has CUDA
        self._device_id = int(device.split(":")[1]) if device and device.count(":") == 1 and \
            device.split(":")[1].isdigit() else 0

    @property
    def runtime(self) -> str:
        return f"onnxruntime-{self.device}"

    def _load(self):
        ort = require("onnxruntime", EXTRA)
        providers = providers_for(self._requested)
        if not self.path.is_file():
            raise ArtifactError(f"{str(self.path)!r} does not exist or is not a file")
        options = session_options(ort, self.threads)
        self._stream, providers = _on_torch_stream(providers, self._device_id)
        try:
            self.session = new_session(ort, str(self.path), options, providers)
        except Exception as exc:
            raise ArtifactError(f"onnxruntime cannot load {str(self.path)!r}: {load_error(exc)}") from None
        self.device = _PROVIDER_NAMES.get(self.session.get_providers()[0], self.session.get_providers()[0])
        inputs = tuple(
            TensorSpec(i.name, tuple(d if isinstance(d, int) else d for d in i.shape), _ORT_TYPES.get(i.type, i.type))
            for i in self.session.get_inputs()
        )
        return inputs, tuple(o.name for o in self.session.get_outputs())

    @property
    def metadata(self) -> dict[str, str]:
        self.load()
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def _infer(self, feed):
        try:
            outs = self.session.run(None, feed)
        except Exception as exc:
            raise RuntimeFailure(f"onnxruntime failed on {self.path.name}: {load_error(exc)}") from None
        return dict(zip(self._outputs, (np.asarray(o) for o in outs)))

    def timed_runs(self, feed, *, warmup: int, iterations: int, budget_s: float | None):
        """On the CUDA / TensorRT providers: inputs and outputs bound on the GPU once (IOBinding, no host copies in
        the loop), device time from CUDA events on the session's compute stream where torch has CUDA (the stream
        was handed to the provider at load), else the host clock around run_with_iobinding; the end-to-end p50 with
        host copies in the note, like the PyTorch CUDA rows. On the CPU: the end-to-end loop."""
        self.load()
        if self.device == "cpu":
            return super().timed_runs(feed, warmup=warmup, iterations=iterations, budget_s=budget_s)
        from ..latency import device_timings, time_locally
        from ..tensors import validate_feed

        samples, how = self._bound_times(validate_feed(self._inputs, feed), "cuda", warmup=warmup,
                                         iterations=iterations, budget_s=budget_s)
        e2e = time_locally(self, feed, warmup=1, iterations=max(5, len(samples) // 5), budget_s=budget_s)
        return device_timings(samples, e2e, how)

    def _bind(self, feed, device_type: str):
        """An IOBinding with the feed copied to `device_type` once and every output allocated there by ORT."""
        ort = require("onnxruntime", EXTRA)
        binding = self.session.io_binding()
        for name, value in feed.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value),
                                                                               device_type, self._device_id))
        for name in self._outputs:
            binding.bind_output(name, device_type, self._device_id)
        return binding

    def _bound_times(self, feed, device_type: str, *, warmup: int, iterations: int, budget_s: float | None,
                     events=None) -> tuple[list[float], str]:
        """(ms per run, how they were taken) of run_with_iobinding with the feed bound on `device_type` ('cuda' in
        the matrix; the tests bind 'cpu', which makes the same calls on the CPU provider, and pass stand-in
        `events`)."""
        from ..latency import cuda_event_times, host_times

        ort = require("onnxruntime", EXTRA)
        binding = self._bind(feed, device_type)
        run_options = ort.RunOptions()
        if self._stream is not None:  # the events order the work; ORT need not block the host after each run
            run_options.add_run_config_entry("disable_synchronize_execution_providers", "1")
            samples = cuda_event_times(lambda: self.session.run_with_iobinding(binding, run_options),
                                       stream=self._stream, warmup=warmup, iterations=iterations, budget_s=budget_s,
                                       events=events)
            return samples, ("device time from CUDA events on the session's compute stream, inputs and outputs "
                             "bound on the GPU (IOBinding)")
        # run_with_iobinding returns once the provider's stream is done: the host clock brackets the work
        samples = host_times(lambda: self.session.run_with_iobinding(binding, run_options), warmup=warmup,
                             iterations=iterations, budget_s=budget_s)
        return samples, (f"host clock around run_with_iobinding, inputs and outputs bound on {device_type} "
                         "(IOBinding; no torch with CUDA here to time with events)")

    def synchronize(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()

    def _close(self):
        self.session = None
        self._stream = None


def _on_torch_stream(providers: list[str], device_id: int) -> tuple[object, list]:
    """(stream, providers): where torch has CUDA, a new torch.cuda.Stream handed to the CUDA / TensorRT provider
    as its compute stream (`user_compute_stream`), so CUDA events recorded on it time exactly the session's work (a
    new stream: ORT treats torch's default stream, handle 0, as none). Else (None, providers) unchanged."""
    if providers[0] == "CPUExecutionProvider":
        return None, providers
    try:
        import torch
    except ImportError:
        return None, providers
    if not torch.cuda.is_available():
        return None, providers
    stream = torch.cuda.Stream(device=device_id)
    options = {"device_id": str(device_id), "user_compute_stream": str(stream.cuda_stream)}
    return stream, [(p, dict(options)) if p != "CPUExecutionProvider" else p for p in providers]


def read_metadata(path: str | Path) -> dict[str, str]:
    """The model's metadata (what OnnxRunner.metadata gives: edgeseq.model, .precision, ...), read with onnx alone:
    no session, and the weights in external files are not loaded."""
    onnx = require("onnx", EXTRA)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # OSError, protobuf's DecodeError on a truncated or foreign file
        raise ArtifactError(f"{str(path)!r} is not a readable ONNX model: {_why(exc)}") from None
    return {p.key: p.value for p in model.metadata_props}


def update_metadata(path: str | Path, items: dict[str, str]) -> None:
    """Add or replace metadata entries in place, atomically (the matrix records where an int8 artifact passed)."""
    onnx = require("onnx", EXTRA)
    model = onnx.load(str(path))
    meta = {**{p.key: p.value for p in model.metadata_props}, **items}
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    with atomic_path(path) as staged:
        onnx.save(model, str(staged))


def runner(path, *, device=None, threads=None) -> OnnxRunner:
    return OnnxRunner(path, device=device, threads=threads)


# ---- layer bisection ------------------------------------------------------------------------------------------------


def module_tensors(path: str | Path, module_names: list[str]) -> dict[str, str]:
    """Map PyTorch module paths to the ONNX tensor holding each module's output.

    The TorchScript exporter names nodes after module scopes ("/highway/highway.3/h/MatMul" is module
    "highway.3.h"); a module's output is the first output of the last node (in graph order) inside its scope.
    Modules with no node of their own (folded batch norms, identities) are left out.
    """
    onnx = require("onnx", EXTRA)
    model = onnx.load(str(path), load_external_data=False)
    wanted = set(module_names)
    last: dict[str, str] = {}
    for node in model.graph.node:
        if not node.output or not node.name.startswith("/"):
            continue
        path_ = _scope_to_module(node.name.split("/")[1:-1])
        while path_:
            if path_ in wanted:
                last[path_] = node.output[0]
            path_ = path_.rpartition(".")[0]
    return last


def _scope_to_module(components: list[str]) -> str:
    """['highway', 'highway.3', 'h'] -> 'highway.3.h'; ['bank', 'convs.0', 'conv'] -> 'bank.convs.0.conv'."""
    parts: list[str] = []
    for comp in components:
        if parts and comp.startswith(parts[-1].rpartition(".")[2] + "."):
            comp = comp[len(parts[-1].rpartition(".")[2]) + 1:]
        parts.append(comp)
    return ".".join(parts)


def intermediate_outputs(path: str | Path, feed: dict[str, np.ndarray], tensors: dict[str, str]) -> dict[str, np.ndarray]:
    """Run the model with the given internal tensors exposed as extra outputs (on a copy; the artifact is untouched)."""
    onnx = require("onnx", EXTRA)
    ort = require("onnxruntime", EXTRA)
    model = onnx.load(str(path))
    existing = {o.name for o in model.graph.output}
    for tensor in dict.fromkeys(tensors.values()):
        if tensor not in existing:
            model.graph.output.append(onnx.ValueInfoProto(name=tensor))
    options = ort.SessionOptions()
    options.log_severity_level = 4
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every named tensor
    session = new_session(ort, model.SerializeToString(), options, ["CPUExecutionProvider"])
    names = list(dict.fromkeys(tensors.values()))
    values = dict(zip(names, session.run(names, feed)))
    return {module: values[tensor] for module, tensor in tensors.items()}


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
    from ..quantize import EVERY_CPU, QuantDtype

    if not config.is_int8 or config.weight_type is QuantDtype.UINT8 or config.reduce_range:
        return (EVERY_CPU,)
    return _WIDE_INT8_ISAS


def quantizable_op_types(config) -> set[str]:
    """The op types this onnxruntime's quantizer takes for the config: quantize_dynamic's integer ops, or
    quantize_static's QDQ / QOperator registry (GRU stays float in all three; see --quant gru=hoisted)."""
    require("onnxruntime", EXTRA)
    from onnxruntime.quantization import registry

    from ..quantize import Approach, QuantFormat

    if config.approach is Approach.INT8_DYNAMIC:
        return set(registry.IntegerOpsRegistry)
    return set(registry.QDQRegistry if config.quant_format is QuantFormat.QDQ else registry.QLinearOpsRegistry)


def weight_only_op_types(config=None) -> set[str]:
    """The op types whose constant weights store_weights_int8 knows how to store as int8."""
    return set(_WEIGHT_SLOTS)


def export_derived(spec, out_path: str | Path, *, precision, options: OnnxOptions = OnnxOptions(), weights=None):
    """fp16 / int8-dynamic / int8-static .onnx derived from the fp32 export; Artifact.parent is the fp32 sha256."""
    from ..quantize import Approach, calibration_feeds, resolve_config

    onnx = require("onnx", EXTRA)
    precision = Precision.parse(precision)
    config = resolve_config(Format.ONNX, precision, options.quant)
    out_path = Path(out_path)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeseq-quant-") as tmp:
        tmp = Path(tmp)
        if options.parent:
            parent_path = Path(options.parent)
            _check_parent(onnx, parent_path, spec)
        else:
            parent_path = tmp / "parent.fp32.onnx"
            export(spec, parent_path, precision=Precision.FP32, weights=weights,
                   options=dataclasses.replace(options, quant=None, calibration_data=None, parent=None))
        parent_sha = sha256_file(parent_path)
        parent_meta = {p.key: p.value for p in onnx.load(str(parent_path)).metadata_props}
        if config.approach is Approach.FP16:
            model = _to_fp16(onnx, parent_path)
        else:
            feeds = None
            if config.approach is Approach.INT8_STATIC:
                feeds = calibration_feeds(spec, config, options.calibration_data)
                if options.calibration_data is not None and config.calibration == "spec":
                    config = config.replace(calibration="user")
            model = _to_int8(onnx, parent_path, tmp, config, feeds)
        census = op_census(model)
        meta = {**parent_meta, "edgeseq.precision": precision.value, "edgeseq.parent_sha256": parent_sha,
                "edgeseq.quant": json.dumps(config.to_dict(), sort_keys=True)}
        if config.is_int8:
            from ..environment import int8_isa
            from ..quantize import INT8_CPUS_KEY, QUANTIZED_ON_KEY

            census["int8_cpus"] = list(int8_safe_isas(config))
            meta.update({INT8_CPUS_KEY: ",".join(census["int8_cpus"]), QUANTIZED_ON_KEY: int8_isa()})
        del model.metadata_props[:]
        for key, value in meta.items():
            model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
        model.producer_name, model.producer_version = "edgeseq", __version__
        with atomic_path(out_path) as staged:
            try:
                onnx.checker.check_model(model)
            except Exception as exc:
                raise ExportError(f"the {precision.value} model does not pass onnx.checker: {_why(exc)}") from None
            onnx.save(model, str(staged))
            _probe_load_isolated(staged, precision)
            _probe_dynamic_shapes(staged, spec)
    return artifact_for(
        out_path, Format.ONNX, precision, spec,
        opset=max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=options.opset),
        weights_sha256=parent_meta.get("edgeseq.weights_sha256", ""),
        exporter=_derived_tool(config),
        export_seconds=round(time.perf_counter() - started, 3),
        parent=parent_sha,
        quantization={"config": config.to_dict(), **census},
    )


def _probe_load_isolated(path: Path, precision) -> None:
    """Load a rewritten graph in a child process first: ONNX Runtime has crashed (segfault) on valid fp16 graphs
    while optimizing them, which would take the whole export down with no message. A crash here is an ExportError."""
    import subprocess
    import sys

    code = ("import sys, onnxruntime as ort\n"
            "o = ort.SessionOptions(); o.log_severity_level = 4\n"
            "ort.InferenceSession(sys.argv[1], sess_options=o, providers=['CPUExecutionProvider'])\n")
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise ExportError(f"onnxruntime did not load the {precision.value} model within 300 s") from None
    if proc.returncode < 0:
        raise ExportError(f"onnxruntime crashed (signal {-proc.returncode}) loading the {precision.value} model; "
                          f"this is a runtime bug, not a bad input: try another precision or --quant setting")
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise ExportError(f"onnxruntime cannot load the {precision.value} model: {last[:300]}")


def _derived_tool(config) -> str:
    from ..quantize import Approach

    if config.approach is Approach.FP16:
        return "onnxconverter-common float16 (keep_io_types)"
    fn = "quantize_static" if config.approach is Approach.INT8_STATIC else "quantize_dynamic"
    return f"onnxruntime.quantization.{fn}"


def _check_parent(onnx, path: Path, spec) -> None:
    if not path.is_file():
        raise ArtifactError(f"parent model {str(path)!r} does not exist")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError on a truncated or foreign file
        raise ArtifactError(f"parent model {str(path)!r} is not a readable ONNX model: {_why(exc)}") from None
    if not model.graph.node:
        raise ArtifactError(f"parent model {str(path)!r} holds no graph (not an ONNX model, or empty)")
    meta = {p.key: p.value for p in model.metadata_props}
    if meta.get("edgeseq.precision", "fp32") != "fp32":
        raise ExportError(f"parent model {str(path)!r} is {meta['edgeseq.precision']}; derive from an fp32 export")
    if meta.get("edgeseq.model", spec.name) != spec.name:
        raise ExportError(f"parent model {str(path)!r} is {meta['edgeseq.model']!r}, not {spec.name!r}")


def _quiet():
    """The quantization tools print progress and warnings; the artifact and its census are the record."""
    from contextlib import ExitStack

    stack = ExitStack()
    stack.enter_context(redirect_stdout(io.StringIO()))
    stack.enter_context(redirect_stderr(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    stack.callback(root.setLevel, level)
    return stack


def _to_fp16(onnx, parent_path: Path):
    """fp16 weights and activations, float32 inputs and outputs (casts at the edges).

    Workaround: ONNX Runtime 1.32's CPU session segfaults while optimizing (level ORT_ENABLE_ALL) an fp16
    Transpose that feeds an fp16 MatMul (cbhg-postnet's GRU output -> out linear). Such Transposes stay fp32 (two
    Casts around them). The graph's value_info is cleared first (the converter re-infers it): stale float32 entries
    clash with the casts it inserts (seen on the pool's Max after a Pad with a -inf constant)."""
    float16 = require("onnxconverter_common.float16", EXTRA)
    model = onnx.load(str(parent_path))
    feeds_matmul = {i for n in model.graph.node if n.op_type == "MatMul" for i in n.input}
    blocked = [n.name for n in model.graph.node if n.op_type == "Transpose" and n.output[0] in feeds_matmul]
    del model.graph.value_info[:]  # the converter re-infers types; stale float32 value_info clashes with its casts
    try:
        with _quiet():
            return float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=blocked or None)
    except Exception as exc:
        raise ExportError(f"onnxconverter-common could not convert the model to fp16: {_why(exc)}") from None


def _to_int8(onnx, parent_path: Path, tmp: Path, config, feeds):
    """quant_pre_process, then quantize_dynamic / quantize_static with the config's options, then weight-only
    storage."""
    require("onnxruntime", EXTRA)
    from onnxruntime.quantization import QuantFormat as OrtFormat
    from onnxruntime.quantization import QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ..quantize import Approach, GruExport, QuantDtype, QuantFormat

    source = parent_path
    hoisted = config.gru is GruExport.HOISTED
    if hoisted:
        source = tmp / "hoisted.onnx"
        onnx.save(hoist_gru_input_projection(onnx.load(str(parent_path))), str(source))
    pre, out = tmp / "pre.onnx", tmp / "quantized.onnx"
    qtype = {QuantDtype.INT8: QuantType.QInt8, QuantDtype.UINT8: QuantType.QUInt8}
    op_types = list(config.op_types) or None
    nodes = None
    try:
        with _quiet():
            # ORT's optimizer would fold the hoisted GRU's identity input weights into the file: skip it there.
            quant_pre_process(str(source), str(pre), skip_optimization=hoisted)
            if hoisted and op_types and "MatMul" not in op_types:  # the hoisted projection is quantized regardless
                nodes = [n.name for n in onnx.load(str(pre)).graph.node
                         if n.op_type in op_types or n.name.endswith("/hoisted/MatMul")]
                op_types = op_types + ["MatMul"]
            if config.approach is Approach.INT8_DYNAMIC:
                quantize_dynamic(str(pre), str(out), op_types_to_quantize=op_types, per_channel=config.per_channel,
                                 reduce_range=config.reduce_range, weight_type=qtype[config.weight_type],
                                 nodes_to_quantize=nodes, extra_options={"MatMulConstBOnly": True})
            else:
                cache = _calibrate(str(pre), tmp, config, feeds, op_types)
                fmt = OrtFormat.QDQ if config.quant_format is QuantFormat.QDQ else OrtFormat.QOperator
                quantize_static(str(pre), str(out), None, quant_format=fmt, op_types_to_quantize=op_types,
                                per_channel=config.per_channel, reduce_range=config.reduce_range,
                                activation_type=qtype[config.activation_type],
                                weight_type=qtype[config.weight_type], calibrate_method=_ort_method(config),
                                nodes_to_quantize=nodes, calibration_cache_path=str(cache),
                                # signed int8 activations are made symmetric (zero point 0): what TensorRT reads
                                extra_options={"MatMulConstBOnly": True,
                                               "ActivationSymmetric": config.activation_type is QuantDtype.INT8,
                                               "WeightSymmetric": True})
    except EdgeseqError:
        raise
    except Exception as exc:
        raise ExportError(f"onnxruntime.quantization failed ({config.label()}): {_why(exc)}") from None
    model = onnx.load(str(out))
    if config.weight_only:
        model = store_weights_int8(model, config.weight_only)
    return model


def _ort_method(config):
    from onnxruntime.quantization import CalibrationMethod as OrtMethod

    from ..quantize import CalibrationMethod

    return {CalibrationMethod.MINMAX: OrtMethod.MinMax, CalibrationMethod.ENTROPY: OrtMethod.Entropy,
            CalibrationMethod.PERCENTILE: OrtMethod.Percentile}[config.calibration_method]


# Histogram sizes for the entropy search: quantize_static's own entropy calibrator uses 128 bins for 128 quantized
# bins, which leaves one candidate threshold (the full range, i.e. MinMax); 2048 bins give it a real search.
_ENTROPY_OPTIONS = {"num_bins": 2048, "num_quantized_bins": 256}


def _calibrate(model_path: str, tmp: Path, config, feeds, op_types):
    """ORT's calibrator over the feeds; the ranges go to quantize_static through its calibration cache file."""
    from onnxruntime.quantization.calibrate import CalibrationDataReader, create_calibrator, save_tensors_data

    from ..quantize import CalibrationMethod

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

    extra = _ENTROPY_OPTIONS if config.calibration_method is CalibrationMethod.ENTROPY else {}
    calibrator = create_calibrator(model_path, op_types, augmented_model_path=str(tmp / "augmented.onnx"),
                                   calibrate_method=_ort_method(config), extra_options=extra)
    try:
        calibrator.collect_data(Reader())
        ranges = calibrator.compute_data()
    except Exception as exc:
        raise ExportError(f"calibration failed on the given data: {_why(exc)}") from None
    cache = tmp / "calibration.json"
    save_tensors_data(ranges, cache)
    return cache


def store_weights_int8(model, op_types):
    """Weight-only int8: the constant weights of float ops of these types are stored as int8 + per-channel scales
    (ORT's quantize_data does the rounding: symmetric, one scale per output channel) and dequantized by constant
    Cast + Mul nodes that ORT folds when it loads the model: a smaller file, the same float kernels at run time."""
    numpy_helper = require("onnx.numpy_helper", EXTRA)
    helper = require("onnx.helper", EXTRA)
    from onnx import TensorProto
    from onnxruntime.quantization.quant_utils import quantize_data

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    new_nodes = []
    for node in graph.node:
        if node.op_type not in op_types:
            continue
        for slot in _WEIGHT_SLOTS.get(node.op_type, ()):
            name = node.input[slot] if slot < len(node.input) else ""
            init = inits.pop(name, None)
            if init is None or init.data_type != TensorProto.FLOAT:
                continue  # already quantized by the quantizer, computed, or not float
            w = numpy_helper.to_array(init)
            # one scale per output channel: MatMul B [K, N] per column; Conv [M, ...] per M; RNN [D, G, K] per D x G
            column_wise = node.op_type == "MatMul" and w.ndim == 2
            if column_wise:
                rows = w.T
            else:
                lead = w.shape[0] * (w.shape[1] if node.op_type in _RECURRENT else 1)
                rows = w.reshape(lead, -1)
            q = np.empty(rows.shape, np.int8)
            scales = np.empty(rows.shape[0], np.float32)
            for r in range(rows.shape[0]):
                _zp, scale, q[r] = quantize_data(rows[r], TensorProto.INT8, True)
                scales[r] = scale if scale > 0 else 1.0
            graph.initializer.remove(init)
            base = f"{name}_weight_int8"
            # Dequantized by Cast + Mul (+ Reshape), not by a DequantizeLinear node: ORT keeps DequantizeLinear of a
            # constant unfolded (it preserves QDQ groups), which would re-dequantize on every call and stop the GRU
            # and MatMul kernels from pre-packing their weights; Cast and Mul of constants fold at session load.
            q_store, scale_shape = (np.ascontiguousarray(q.T), (1, -1)) if column_wise else (q, (-1, 1))
            graph.initializer.extend([
                numpy_helper.from_array(q_store, base),
                numpy_helper.from_array(scales.reshape(scale_shape), f"{base}_scale"),
            ])
            scaled = name if q_store.shape == w.shape else f"{base}_dequantized"
            new_nodes.append(helper.make_node("Cast", [base], [f"{base}_float"], name=f"{base}_Cast",
                                              to=TensorProto.FLOAT))
            new_nodes.append(helper.make_node("Mul", [f"{base}_float", f"{base}_scale"], [scaled], name=f"{base}_Mul"))
            if scaled != name:
                graph.initializer.append(numpy_helper.from_array(np.array(w.shape, np.int64), f"{base}_shape"))
                new_nodes.append(helper.make_node("Reshape", [scaled, f"{base}_shape"], [name],
                                                  name=f"{base}_Reshape"))
    for k, node in enumerate(new_nodes):  # inputs are all initializers: they may go first
        graph.node.insert(k, node)
    return model


def hoist_gru_input_projection(model):
    """Rewrite each GRU so that x_t W_ih (+ its bias) for all t is one MatMul + Add before it.

    The GRU op still runs the recurrence (ORT's fused kernel), now on the projected gates with identity input
    weights (built by EyeLike at load time, not stored) and only the recurrent bias. A bidirectional GRU becomes one
    MatMul for both directions, a Split, a forward and a reverse GRU, and Concats: the same outputs in fp32 (rounding
    aside), and the projection is a plain MatMul that ORT's quantizer takes. Why this is a graph rewrite and not a
    torch module swap: the TorchScript exporter turns a hand-written recurrence either into an unrolled graph that
    fixes T or into a Loop that ORT runs node by node per step; rewriting the one GRU node keeps ORT's fused kernel.
    Measured (bench/bench_quant.py): on ORT it costs latency and, quantized, accuracy, because ORT's GRU kernel
    already does the input projection for all t as one GEMM and the identity input GEMM left behind is larger.
    """
    numpy_helper = require("onnx.numpy_helper", EXTRA)
    helper = require("onnx.helper", EXTRA)

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    for node in [n for n in graph.node if n.op_type == "GRU"]:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("layout", 0) != 0:
            raise UnsupportedError("hoisting the GRU input projection supports layout=0 GRUs only")
        inputs = list(node.input) + [""] * (6 - len(node.input))
        x, w_name, r_name, b_name, seq_lens, h0 = inputs[:6]
        if w_name not in inits or r_name not in inits or (b_name and b_name not in inits):
            raise UnsupportedError(f"GRU {node.name!r} has computed weights; only constant weights can be hoisted")
        hidden = int(attrs["hidden_size"])
        w, r = numpy_helper.to_array(inits[w_name]), numpy_helper.to_array(inits[r_name])
        dirs = w.shape[0]
        b = numpy_helper.to_array(inits[b_name]) if b_name else np.zeros((dirs, 6 * hidden), np.float32)
        direction = attrs.get("direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else direction
        names = ["forward", "reverse"] if dirs == 2 else [direction]
        p = f"{node.name or 'GRU'}/hoisted"
        gates = 3 * hidden
        new_inits = [
            numpy_helper.from_array(np.ascontiguousarray(np.concatenate(list(w), 0).T), f"{p}/W_ih"),  # [K, D*3H]
            numpy_helper.from_array(np.concatenate([b[d, :gates] for d in range(dirs)]), f"{p}/b_ih"),
            numpy_helper.from_array(np.array([gates, gates], np.int64), f"{p}/eye_shape"),
            numpy_helper.from_array(np.array([0], np.int64), f"{p}/axis0"),
        ]
        new_nodes = [
            helper.make_node("MatMul", [x, f"{p}/W_ih"], [f"{p}/xW"], name=f"{p}/MatMul"),
            helper.make_node("Add", [f"{p}/xW", f"{p}/b_ih"], [f"{p}/gates"], name=f"{p}/Add"),
            helper.make_node("ConstantOfShape", [f"{p}/eye_shape"], [f"{p}/zeros"], name=f"{p}/Zeros",
                             value=numpy_helper.from_array(np.zeros(1, np.float32))),
            helper.make_node("EyeLike", [f"{p}/zeros"], [f"{p}/eye2d"], name=f"{p}/EyeLike"),
            helper.make_node("Unsqueeze", [f"{p}/eye2d", f"{p}/axis0"], [f"{p}/W_identity"], name=f"{p}/Unsqueeze"),
        ]
        if dirs == 2:
            new_inits.append(numpy_helper.from_array(np.array([gates, gates], np.int64), f"{p}/split"))
            new_nodes.append(helper.make_node("Split", [f"{p}/gates", f"{p}/split"], [f"{p}/gates0", f"{p}/gates1"],
                                              name=f"{p}/Split", axis=-1))
            xs = [f"{p}/gates0", f"{p}/gates1"]
        else:
            xs = [f"{p}/gates"]
        ys, yhs = [], []
        for d in range(dirs):
            new_inits.append(numpy_helper.from_array(np.ascontiguousarray(r[d:d + 1]), f"{p}/R{d}"))
            rec_bias = np.concatenate([np.zeros(gates, np.float32), b[d, gates:]])[None]
            new_inits.append(numpy_helper.from_array(rec_bias.astype(np.float32), f"{p}/B{d}"))
            h0_d = ""
            if h0:
                new_inits.append(numpy_helper.from_array(np.array([d], np.int64), f"{p}/index{d}"))
                new_nodes.append(helper.make_node("Gather", [h0, f"{p}/index{d}"], [f"{p}/h0_{d}"],
                                                  name=f"{p}/Gather{d}", axis=0))
                h0_d = f"{p}/h0_{d}"
            ys.append(f"{p}/Y{d}")
            yhs.append(f"{p}/Y_h{d}")
            new_nodes.append(helper.make_node(
                "GRU", [xs[d], f"{p}/W_identity", f"{p}/R{d}", f"{p}/B{d}", seq_lens, h0_d], [ys[d], yhs[d]],
                name=f"{p}/GRU{d}", **{**attrs, "direction": names[d]}))
        outs = list(node.output) + [""] * (2 - len(node.output))
        if outs[0]:
            new_nodes.append(helper.make_node("Concat", ys, [outs[0]], name=f"{p}/ConcatY", axis=1) if dirs == 2
                             else helper.make_node("Identity", ys, [outs[0]], name=f"{p}/Y"))
        if len(outs) > 1 and outs[1]:
            new_nodes.append(helper.make_node("Concat", yhs, [outs[1]], name=f"{p}/ConcatY_h", axis=0) if dirs == 2
                             else helper.make_node("Identity", yhs, [outs[1]], name=f"{p}/Y_h"))
        position = list(graph.node).index(node)
        graph.node.remove(node)
        for k, new in enumerate(new_nodes):
            graph.node.insert(position + k, new)
        graph.initializer.extend(new_inits)
    used = {i for n in graph.node for i in n.input}
    for init in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(init)
    return model


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
