"""ONNX: export with torch.onnx and run with ONNX Runtime.

Exporter choice (measured on torch 2.13): the TorchScript-based exporter (dynamo=False) keeps the time axis
symbolic through nn.GRU (one ONNX GRU op) and nn.MaxPool1d; the torch.export-based exporter specializes T there.
TorchScript is deprecated upstream, so it is the default *deliberately* and the dynamo path stays selectable; either
way the exported graph is checked (declared axes must stay symbolic, and ONNX Runtime must run it at another batch
and T) and a fixed axis is an ExportError, never a surprise at run time.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
import warnings
from contextlib import redirect_stdout
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from .._lazy import require
from .._version import __version__
from ..artifact import Artifact, atomic_path, sha256_file
from ..enums import Format, Precision
from ..errors import ArtifactError, ExportError, RuntimeFailure, UnsupportedError
from ..runner import Runner
from ..tensors import TensorSpec

EXTRA = "onnx"
PROBE_BATCH, PROBE_TIME = 3, 50
PRECISIONS = (Precision.FP32,)  # fp16 / int8 arrive with the quantization work
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


class OnnxExporter(str, Enum):
    TORCHSCRIPT = "torchscript"
    DYNAMO = "dynamo"


@dataclass(frozen=True)
class OnnxOptions:
    opset: int = 17
    exporter: OnnxExporter = OnnxExporter.TORCHSCRIPT
    simplify: bool = True


def export(spec, out_path: str | Path, *, precision=Precision.FP32, options: OnnxOptions = OnnxOptions(), weights=None):
    """spec -> .onnx with dynamic batch/time, simplified, stamped with edgeseq metadata; written atomically."""
    import torch

    onnx = require("onnx", EXTRA)
    precision = Precision.parse(precision)
    check_precision(precision)
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
    return Artifact(
        path=str(out_path),
        format=Format.ONNX.value,
        precision=precision.value,
        model=spec.name,
        sha256=sha256_file(out_path),
        size_bytes=out_path.stat().st_size,
        opset=options.opset,
        weights_sha256=state_dict_sha256(module),
        exporter=f"torch.onnx ({options.exporter.value})" + (" + onnxslim" if options.simplify else ""),
        export_seconds=round(elapsed, 3),
        inputs=tuple(t.to_dict() for t in spec.inputs),
        outputs=tuple(t.to_dict() for t in spec.outputs),
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
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
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
        session = ort.InferenceSession(str(path), sess_options=quiet, providers=["CPUExecutionProvider"])
        outs = session.run(None, feed)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(
            f"the exported graph does not run at batch={batch} T={PROBE_TIME}: a dynamic axis was specialized "
            f"during export ({first[:200]})"
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

    @property
    def runtime(self) -> str:
        return f"onnxruntime-{self.device}"

    def _load(self):
        ort = require("onnxruntime", EXTRA)
        providers = providers_for(self._requested)
        if not self.path.is_file():
            raise ArtifactError(f"{str(self.path)!r} does not exist or is not a file")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads or 0
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ArtifactError(f"onnxruntime cannot load {str(self.path)!r}: {first[:300]}") from None
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
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise RuntimeFailure(f"onnxruntime failed on {self.path.name}: {first[:300]}") from None
        return dict(zip(self._outputs, (np.asarray(o) for o in outs)))

    def _close(self):
        self.session = None


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
    session = ort.InferenceSession(model.SerializeToString(), sess_options=options,
                                   providers=["CPUExecutionProvider"])
    names = list(dict.fromkeys(tensors.values()))
    values = dict(zip(names, session.run(names, feed)))
    return {module: values[tensor] for module, tensor in tensors.items()}
