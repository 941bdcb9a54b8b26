"""TensorRT: ONNX -> engine with an optimization profile, a JSON sidecar, and a runner on torch CUDA buffers.

Two halves, so that most of it is useful (and tested) on machines without TensorRT:

* Without TensorRT (or preparing a Jetson build): `export` writes the TensorRT-ready ONNX, runs a *preflight*
  against the ONNX parser's documented operator support (naming every node it would reject), and writes a build
  plan (JSON) holding the optimization profile, the precision flags and the exact `trtexec` command line that builds
  the engine on the target. The Artifact then points at the ONNX and says in its notes that no engine was built
  here; nothing claims parity for it.
* With TensorRT and a CUDA GPU: the same ONNX goes through `OnnxParser` -> `BuilderConfig` -> a serialized engine
  plus a sidecar (TensorRT version, GPU, compute capability, profile, edgeseq model). The runner refuses an engine
  whose sidecar names another GPU or TensorRT version (engines are not portable), sets the input shapes on every
  call and runs `execute_async_v3` on a torch CUDA stream with torch tensors as buffers (no pycuda).

Precision (TensorRT 10 and 11 differ here; both are handled):
* fp32 - TF32 is switched off (`--noTF32`), so fp32 means fp32 as in the other runtimes.
* fp16 - TensorRT 10: the fp32 ONNX with the FP16 builder flag (`--fp16`). TensorRT 11 removed the weak-typing
  flags: it builds fp16 only from an ONNX whose tensors are fp16 (pass one with `TensorRTOptions(onnx_path=...)`).
* int8-static - explicit quantization only: an ONNX with QuantizeLinear/DequantizeLinear nodes (made by the
  ONNX derive step, or passed with `onnx_path`), built as a strongly typed network (`--stronglyTyped`), the
  documented path for Q/DQ models on TensorRT 10 and the only one on 11. Implicit calibration is not offered.

Submodules: options, shape_profiles (the engine's min / opt / max shapes), preflight, build (plan, builder,
sidecar), export, runner.
"""

from __future__ import annotations

from ...enums import Format, Precision
from ..contract import ExportFormat, ExportSettings
from .build import (
    BuildPlan,
    build_engine,
    can_build,
    make_plan,
    read_sidecar,
    sidecar_metadata,
    this_machine,
    validate_sidecar,
)
from .export import export, is_fp16_onnx
from .options import (
    EXTRA,
    NO_ENGINE,
    ONNX_SUFFIX,
    PLAN_SUFFIX,
    PRECISIONS,
    SIDECAR_SCHEMA,
    TIMING_CACHE_NAME,
    EngineBuild,
    ShapeRange,
    TensorRTOptions,
    companion_paths,
    quant_defaults,
    validate_precision,
)
from .preflight import PreflightIssue, PreflightResult, preflight, supported_ops
from .runner import TensorRTRunner, runner, runtime_devices
from .shape_profiles import default_shape_profile, parse_shape_profile, resolve_shape_profile


class TensorRTFormat(ExportFormat):
    format = Format.TENSORRT
    title = "TensorRT"
    extra = EXTRA
    precisions = PRECISIONS
    suffixes = (".engine", ".plan")
    needs = ("onnx",)  # the preflighted ONNX and the build plan; an engine is built where tensorrt and a GPU are
    settings = frozenset({"shapes"})
    runtime = "tensorrt"

    def install_hint(self) -> str:
        return "pip install 'edgeseq[onnx]'"  # what the plan needs; the engine needs NVIDIA's tensorrt on a GPU

    def handoff_suffix(self) -> str:
        return ONNX_SUFFIX  # a Jetson builds its own engine from the preflighted ONNX

    def validate_precision(self, precision, options=None) -> None:
        validate_precision(precision, options)

    def _options(self, precision: Precision, settings: ExportSettings) -> TensorRTOptions:
        from ..onnx import OnnxOptions, exporter_kind

        onnx = OnnxOptions(opset=settings.opset, exporter=exporter_kind(settings.exporter))
        return TensorRTOptions(onnx=onnx, shapes=parse_shape_profile(settings.shapes) or None)

    def export(self, spec, out, *, precision=Precision.FP32, options=None, weights=None):
        return export(spec, out, precision=precision, options=options, weights=weights)

    def validate_plan(self, spec, options: TensorRTOptions) -> None:
        resolve_shape_profile(spec, options.shapes)  # a bad --shapes fails before anything is written

    def quant_defaults(self):
        return quant_defaults()

    def runner(self, path, *, device=None, threads=None) -> TensorRTRunner:
        return TensorRTRunner(path, device=device, threads=threads)

    def runtime_devices(self) -> list[str]:
        return runtime_devices()

    def runtime_label(self, device: str) -> str:
        return "tensorrt-cuda"  # an engine always runs on the GPU, whatever the delegate

    def read_metadata(self, path) -> dict[str, str]:
        return sidecar_metadata(read_sidecar(path))


FORMAT = TensorRTFormat()

__all__ = [
    "BuildPlan", "EngineBuild", "FORMAT", "NO_ENGINE", "ONNX_SUFFIX", "PLAN_SUFFIX", "PreflightIssue",
    "PreflightResult", "SIDECAR_SCHEMA", "ShapeRange", "TIMING_CACHE_NAME", "TensorRTFormat", "TensorRTOptions",
    "TensorRTRunner", "build_engine", "can_build", "validate_precision", "validate_sidecar", "companion_paths",
    "default_shape_profile", "export", "is_fp16_onnx", "make_plan", "parse_shape_profile", "preflight", "read_sidecar",
    "resolve_shape_profile", "runner", "runtime_devices", "supported_ops", "this_machine",
]
