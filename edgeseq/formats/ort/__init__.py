"""ONNX Runtime Mobile: the ORT format (.ort), converted from the ONNX export of the same precision by onnxruntime's
own tool, with the operator config for an app's reduced ORT build and the NNAPI / CoreML usability check beside it,
run by ONNX Runtime. `FORMAT` is what the rest of edgeseq asks; the submodules do the work: options, convert,
usability, metadata, runner.
"""

from __future__ import annotations

from ...enums import Format, Precision
from ..contract import ExportFormat, ExportSettings
from .metadata import IDENTIFIER, read_metadata
from .options import CONFIG_SUFFIX, EXTRA, PRECISIONS, OrtOptions
from .runner import RUNTIME, OrtRunner, runtime_devices


class OrtFormat(ExportFormat):
    format = Format.ORT
    title = "ORT"
    extra = EXTRA
    precisions = PRECISIONS
    suffixes = (".ort",)
    needs = ("onnx", "onnxruntime")
    settings = frozenset({"quant", "calibration", "parent"})  # the ONNX export's: the .ort is converted from it
    runtime = RUNTIME
    device_runtimes = ("onnxruntime",)  # a device's onnxruntime loads an .ort by its suffix (the agent keeps it)

    def looks_like(self, head: bytes) -> bool:
        return head[4:8] == IDENTIFIER

    def _onnx(self):
        from .. import get

        return get(Format.ONNX)

    def _options(self, precision: Precision, settings: ExportSettings) -> OrtOptions:
        return OrtOptions(onnx=self._onnx()._options(precision, settings))

    def export(self, spec, out, *, precision=Precision.FP32, options=None, weights=None):
        from .convert import export

        return export(spec, out, precision=precision, options=options, weights=weights)

    def quant_defaults(self):
        return self._onnx().quant_defaults()

    def validate_quant(self, config) -> None:
        self._onnx().validate_quant(config)

    def runner(self, path, *, device=None, threads=None) -> OrtRunner:
        return OrtRunner(path, device=device, threads=threads)

    def runtime_devices(self) -> list[str]:
        return runtime_devices()

    def read_metadata(self, path) -> dict[str, str]:
        return read_metadata(path)


FORMAT = OrtFormat()

__all__ = ["CONFIG_SUFFIX", "EXTRA", "FORMAT", "PRECISIONS", "OrtFormat", "OrtOptions", "OrtRunner", "read_metadata",
           "runtime_devices"]
