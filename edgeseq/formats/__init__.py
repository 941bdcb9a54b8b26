"""One module per format; this file only maps formats to those modules and tells a file's format."""

from __future__ import annotations

import importlib
from pathlib import Path

from ..enums import Format
from ..errors import ArtifactError, UnsupportedError

_MODULES = {Format.TORCH: "torch", Format.ONNX: "onnx", Format.TFLITE: "tflite", Format.TENSORRT: "tensorrt"}
_SUFFIXES = {".onnx": Format.ONNX, ".tflite": Format.TFLITE, ".engine": Format.TENSORRT, ".plan": Format.TENSORRT}
_ONNX_MAGIC_FIELDS = (b"\x08", b"\x12", b"\x1a", b"\x3a")  # ir_version, producer_name, producer_version, graph


def module_for(fmt: Format | str):
    fmt = Format.parse(fmt)
    name = _MODULES.get(fmt)
    if name is None:
        raise UnsupportedError(f"format {fmt.value!r} is not available in this edgeseq build yet")
    return importlib.import_module(f"{__name__}.{name}")


def exportable_formats() -> list[Format]:
    return [f for f in _MODULES if f is not Format.TORCH]


def support_table() -> dict[str, dict[Format, tuple]]:
    """What edgeseq promises: every registered model exports to every format, at each format's precisions
    (model -> format -> precisions). tests/test_support.py checks that the default test run exports and checks
    each (model, format) pair, so a new model or format cannot land untested."""
    from ..models import list_models

    return {spec.name: {fmt: module_for(fmt).PRECISIONS for fmt in exportable_formats()} for spec in list_models()}


# what each format's export + run needs importable (TensorRT: only onnx, for the preflighted ONNX and build plan;
# an engine is built where tensorrt and a GPU are present too)
_NEEDS = {Format.ONNX: ("onnx", "onnxruntime"), Format.TFLITE: ("litert_torch", "ai_edge_litert"),
          Format.TENSORRT: ("onnx",)}


def installed_formats() -> list[Format]:
    """The formats this environment can export and check (`-f all`): found by module spec, without importing the
    SDKs (litert-torch alone takes seconds to import)."""
    from .._lazy import installed

    return [fmt for fmt, needs in _NEEDS.items() if all(installed(n) for n in needs)]


_EXTRAS = {Format.ONNX: "onnx", Format.TFLITE: "tflite", Format.TENSORRT: "onnx"}


def formats_not_installed() -> dict[Format, str]:
    """Exportable formats `-f all` leaves out here, each with the pip extra that brings it."""
    have = installed_formats()
    return {fmt: f"pip install 'edgeseq[{_EXTRAS[fmt]}]'" for fmt in exportable_formats() if fmt not in have}


def detect_format(path: str | Path) -> Format:
    """The format of an artifact file, from its suffix, checked against its first bytes where that is cheap."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{str(path)!r} does not exist")
    if not path.is_file():
        raise ArtifactError(f"{str(path)!r} is a directory, not a model file")
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(_SUFFIXES))
        raise ArtifactError(f"cannot tell the format of {str(path)!r}: expected a file ending in {known}")
    if path.stat().st_size == 0:
        raise ArtifactError(f"{str(path)!r} is empty")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if fmt is Format.ONNX and head[:1] not in _ONNX_MAGIC_FIELDS:
        raise ArtifactError(f"{str(path)!r} is not an ONNX model (it does not start with an ONNX protobuf field)")
    if fmt is Format.TFLITE and head[4:8] != b"TFL3":
        raise ArtifactError(f"{str(path)!r} is not a TFLite model (no TFL3 flatbuffer identifier)")
    return fmt


def read_metadata(path: str | Path, fmt: Format | None = None) -> dict[str, str]:
    """An artifact's edgeseq metadata, read on this host by its format module (no session, no device)."""
    return module_for(fmt or detect_format(path)).read_metadata(path)


def runner_for(path: str | Path, *, device: str | None = None, threads: int | None = None):
    fmt = detect_format(path)
    return module_for(fmt).runner(path, device=device, threads=threads)
