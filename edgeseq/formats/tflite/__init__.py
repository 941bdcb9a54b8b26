"""TFLite / LiteRT: export with litert-torch, quantize with ai-edge-quantizer, run with the LiteRT interpreter.
`FORMAT` is what the rest of edgeseq asks; the submodules do the work: options, convert, rewrites (the module
swaps that keep T dynamic), litert_loop (the GRU recurrence as one WHILE loop), metadata, runner, layers (taps).
"""

from __future__ import annotations

from ...enums import Format, Precision
from ..contract import ExportFormat, ExportSettings
from .metadata import read_metadata, update_metadata
from .options import DEFAULT_MAX_TIME, EXTRA, PRECISIONS, TfliteOptions, validate_precision
from .runner import TfliteRunner, declared_names, declared_tensors, narrowed, runner, runtime_devices


def export(spec, out_path, *, precision=Precision.FP32, options: TfliteOptions | None = None, weights=None):
    from .convert import export as convert

    return convert(spec, out_path, precision=precision, options=options, weights=weights)


class TfliteFormat(ExportFormat):
    format = Format.TFLITE
    title = "TFLite"
    extra = EXTRA
    precisions = PRECISIONS
    suffixes = (".tflite",)
    needs = ("litert_torch", "ai_edge_litert")
    settings = frozenset({"max_time"})
    runtime = "litert"

    def looks_like(self, head: bytes) -> bool:
        return head[4:8] == b"TFL3"  # the flatbuffer file identifier

    def _options(self, precision: Precision, settings: ExportSettings) -> TfliteOptions:
        return TfliteOptions() if settings.max_time is None else TfliteOptions(max_time=settings.max_time)

    def export(self, spec, out, *, precision=Precision.FP32, options=None, weights=None):
        return export(spec, out, precision=precision, options=options, weights=weights)

    def sweep_limits(self, options: TfliteOptions) -> dict[str, int]:
        return {"max_time": options.max_time, "max_batch": options.max_batch}

    def runner(self, path, *, device=None, threads=None) -> TfliteRunner:
        return TfliteRunner(path, device=device, threads=threads)

    def runtime_devices(self) -> list[str]:
        return runtime_devices()

    def read_metadata(self, path) -> dict[str, str]:
        return read_metadata(path)

    def update_metadata(self, path, items: dict[str, str]) -> bool:
        update_metadata(path, items)
        return True

    def layer_outputs(self, path, module, feed, spec, expected):
        from .layers import aligned_outputs, module_tensors

        tensors, mixed = module_tensors(path, module)
        return tensors, mixed, aligned_outputs(path, feed, spec.input_names, tensors, expected)


FORMAT = TfliteFormat()

__all__ = ["DEFAULT_MAX_TIME", "EXTRA", "FORMAT", "PRECISIONS", "TfliteFormat", "TfliteOptions", "TfliteRunner",
           "validate_precision", "declared_names", "declared_tensors", "narrowed", "export", "read_metadata", "runner",
           "runtime_devices",
           "update_metadata"]
