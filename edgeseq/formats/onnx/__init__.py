"""ONNX: export with torch.onnx, fp16 / int8 derived with onnxconverter-common and onnxruntime.quantization, run
with ONNX Runtime. `FORMAT` is what the rest of edgeseq asks; the submodules do the work:
options (what an export takes), convert (fp32 export), derive (fp16 / int8 from an fp32 file), quant_defaults,
ops (op vocabulary, int8 CPUs, census), weights (int8 weight storage, GRU rewrite), session, runner, metadata, taps.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ...enums import Format, Precision
from ...errors import InputError
from ..contract import ExportFormat, ExportSettings
from .metadata import read_metadata, update_metadata
from .ops import int8_safe_isas, op_census, quantizable_op_types, weight_only_op_types
from .options import EXTRA, PRECISIONS, OnnxExporter, OnnxOptions, validate_precision
from .runner import OnnxRunner, runner
from .session import available_providers, new_session, providers_for, runtime_devices, session_options


def export(spec, out_path: str | Path, *, precision=Precision.FP32, options: OnnxOptions = OnnxOptions(), weights=None):
    """fp32: converted from the module; fp16 / int8: derived from an fp32 export (options.parent or a fresh one)."""
    from .convert import export as convert
    from .derive import export_derived

    precision = Precision.parse(precision)
    validate_precision(precision)
    if precision is Precision.FP32:
        return convert(spec, out_path, precision=precision, options=options, weights=weights)
    options = dataclasses.replace(options, quant=FORMAT.quant_config(precision, options.quant))
    return export_derived(spec, out_path, precision=precision, options=options, weights=weights)


def exporter_kind(name) -> OnnxExporter:
    try:
        return OnnxExporter(name)
    except ValueError:
        raise InputError(f"unknown exporter {name!r}; choose torchscript or dynamo") from None


class OnnxFormat(ExportFormat):
    format = Format.ONNX
    title = "ONNX"
    extra = EXTRA
    precisions = PRECISIONS
    suffixes = (".onnx",)
    needs = ("onnx", "onnxruntime")
    settings = frozenset({"quant", "calibration", "parent"})
    runtime = "onnxruntime"

    def looks_like(self, head: bytes) -> bool:
        return head[:1] in (b"\x08", b"\x12", b"\x1a", b"\x3a")  # ir_version, producer name / version, graph

    def _options(self, precision: Precision, settings: ExportSettings) -> OnnxOptions:
        kind = exporter_kind(settings.exporter)
        config = None
        if precision is not Precision.FP32:
            config = self.quant_config(precision, settings.quant)
            if settings.calibration is not None and precision is Precision.INT8_STATIC:
                config = config.replace(calibration=str(settings.calibration))
        elif settings.quant or settings.calibration is not None or settings.calibration_data is not None:
            raise InputError("quantization settings and calibration data apply to fp16 / int8 exports, not fp32")
        return OnnxOptions(opset=settings.opset, exporter=kind, quant=config,
                           calibration_data=settings.calibration_data,
                           parent=str(settings.parent) if settings.parent else None)

    def export(self, spec, out, *, precision=Precision.FP32, options=None, weights=None):
        return export(spec, out, precision=precision, options=options or OnnxOptions(), weights=weights)

    def quant_defaults(self):
        from .quant_defaults import DEFAULTS

        return DEFAULTS

    def validate_quant(self, config) -> None:
        from .quant_defaults import validate_op_names

        validate_op_names(config)

    def runner(self, path, *, device=None, threads=None) -> OnnxRunner:
        return OnnxRunner(path, device=device, threads=threads)

    def runtime_devices(self) -> list[str]:
        return runtime_devices()

    def read_metadata(self, path) -> dict[str, str]:
        return read_metadata(path)

    def update_metadata(self, path, items: dict[str, str]) -> bool:
        update_metadata(path, items)
        return True

    def layer_outputs(self, path, module, feed, spec, expected):
        from .taps import intermediate_outputs, module_tensors

        tensors = module_tensors(path, list(expected))
        return tensors, set(), intermediate_outputs(path, feed, tensors)


FORMAT = OnnxFormat()

__all__ = ["EXTRA", "FORMAT", "PRECISIONS", "OnnxExporter", "OnnxFormat", "OnnxOptions", "OnnxRunner",
           "available_providers", "validate_precision", "export", "exporter_kind", "int8_safe_isas", "new_session",
           "op_census", "providers_for", "quantizable_op_types", "read_metadata", "runner", "runtime_devices",
           "session_options", "update_metadata", "weight_only_op_types"]
