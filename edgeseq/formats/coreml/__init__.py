"""Core ML: an .mlpackage (mlprogram) converted here by coremltools from the traced PyTorch original, at fp32 or fp16
compute precision, with T (and batch) as RangeDims; checked structurally on any OS (the program loads back as a spec,
op census, while_loops, input ranges: in its user_defined_metadata and notes), run by Core ML on macOS, or on a Mac
through a device profile with runtime = "coreml" over ssh. Elsewhere the matrix lists it as converted, not run, with
no parity claimed (as TensorRT plans without an engine). Submodules: options, convert, structure, metadata, runner.
"""

from __future__ import annotations

from pathlib import Path

from ...enums import Format, Precision
from ..contract import ExportFormat, ExportSettings
from .metadata import looks_like_package, read_metadata, update_metadata
from .options import DEFAULT_MAX_BATCH, DEFAULT_MAX_TIME, EXTRA, MACOS_ONLY, PRECISIONS, RUNTIME, SUFFIX, CoremlOptions
from .runner import CoremlRunner, runtime_devices


class CoremlFormat(ExportFormat):
    format = Format.COREML
    title = "Core ML"
    extra = EXTRA
    precisions = PRECISIONS
    suffixes = (SUFFIX,)
    needs = ("coremltools",)
    settings = frozenset({"max_time"})
    runtime = RUNTIME
    folder = True  # an .mlpackage is a folder, not a file

    def looks_like_folder(self, path: Path) -> bool:
        return looks_like_package(path)

    def _options(self, precision: Precision, settings: ExportSettings) -> CoremlOptions:
        return CoremlOptions() if settings.max_time is None else CoremlOptions(max_time=settings.max_time)

    def export(self, spec, out, *, precision=Precision.FP32, options=None, weights=None):
        from .convert import export

        return export(spec, out, precision=precision, options=options, weights=weights)

    def sweep_limits(self, options: CoremlOptions) -> dict[str, int]:
        return {"max_time": options.max_time, "max_batch": options.max_batch}

    def runner(self, path, *, device=None, threads=None) -> CoremlRunner:
        return CoremlRunner(path, device=device, threads=threads)

    def runtime_devices(self) -> list[str]:
        return runtime_devices()

    def read_metadata(self, path) -> dict[str, str]:
        return read_metadata(path)

    def update_metadata(self, path, items: dict[str, str]) -> bool:
        update_metadata(path, items)
        return True


FORMAT = CoremlFormat()

__all__ = [
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_TIME",
    "EXTRA",
    "FORMAT",
    "MACOS_ONLY",
    "PRECISIONS",
    "CoremlFormat",
    "CoremlOptions",
    "CoremlRunner",
    "read_metadata",
    "runtime_devices",
    "update_metadata",
]
