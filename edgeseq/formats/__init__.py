"""The format registry: one package per export format, each meeting formats/contract.py; this file only maps
format names and file suffixes to those packages (torch, the reference, is a runner module, not an export format)."""

from __future__ import annotations

import importlib
from pathlib import Path

from ..enums import Format
from ..errors import ArtifactError, UnsupportedError
from .contract import ExportFormat, ExportSettings

# registration: Format -> the package whose FORMAT meets the contract (adding a format = one package + one line)
_PACKAGES = {Format.ONNX: "onnx", Format.TFLITE: "tflite", Format.TENSORRT: "tensorrt", Format.ORT: "ort",
             Format.COREML: "coreml",
             Format.EXECUTORCH: "executorch"}


def get(fmt: Format | str) -> ExportFormat:
    """The registered format (its contract object) for a name or Format."""
    fmt = Format.parse(fmt)
    if fmt is Format.TORCH:
        raise UnsupportedError("torch is the reference, not an export format; choose onnx or tflite")
    name = _PACKAGES.get(fmt)
    if name is None:
        raise UnsupportedError(f"format {fmt.value!r} is not available in this edgeseq build yet")
    return importlib.import_module(f"{__name__}.{name}").FORMAT


def file_suffix(fmt: Format) -> str:
    """The suffix a format writes ('.pte'), or '' for the PyTorch reference, which writes no file."""
    return get(fmt).suffixes[0] if fmt in _PACKAGES else ""


def registered() -> list[ExportFormat]:
    return [get(fmt) for fmt in _PACKAGES]


def exportable_formats() -> list[Format]:
    return list(_PACKAGES)


def support_table() -> dict[str, dict[Format, tuple]]:
    """What edgeseq promises: every registered model exports to every format, at each format's precisions
    (model -> format -> precisions). tests/test_support.py checks that the default test run exports and checks
    each (model, format) pair, so a new model or format cannot land untested."""
    from ..models import list_models

    return {spec.name: {f.format: f.precisions for f in registered() if not f.refuses(spec)} for spec in list_models()}


def unsupported_pairs() -> dict[tuple[str, Format], str]:
    """(model, format) -> why the format cannot export the registered model: what support_table leaves out."""
    from ..models import list_models

    return {(spec.name, f.format): f.refuses(spec) for spec in list_models() for f in registered() if f.refuses(spec)}


def installed_formats() -> list[Format]:
    """The formats this environment can export and check (`-f all`): found by module spec, without importing the
    SDKs (litert-torch alone takes seconds to import)."""
    from .._lazy import installed

    return [f.format for f in registered() if all(installed(n) for n in f.needs)]


def formats_not_installed() -> dict[Format, str]:
    """Exportable formats `-f all` leaves out here, each with the pip command that brings it."""
    have = installed_formats()
    return {f.format: f.install_hint() for f in registered() if f.format not in have}


def _by_suffix() -> dict[str, ExportFormat]:
    return {suffix: f for f in registered() for suffix in f.suffixes}


def detect_format(path: str | Path) -> Format:
    """The format of an artifact file, from its suffix, checked against its first bytes where that is cheap."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{str(path)!r} does not exist")
    suffixes = _by_suffix()
    fmt = suffixes.get(path.suffix.lower())
    if path.is_dir():  # a folder artifact (Core ML's .mlpackage) is checked by its format
        if fmt is None or not fmt.folder:
            raise ArtifactError(f"{str(path)!r} is a directory, not a model file")
        if not fmt.looks_like_folder(path):
            raise ArtifactError(f"{str(path)!r} is not {_a(fmt.title)} package (its manifest is missing or unreadable)")
        return fmt.format
    if fmt is None:
        known = ", ".join(sorted(suffixes))
        raise ArtifactError(f"cannot tell the format of {str(path)!r}: expected a file ending in {known}")
    if fmt.folder:
        raise ArtifactError(f"{str(path)!r} is a file; {_a(fmt.title)} package ({path.suffix}) is a folder")
    if path.stat().st_size == 0:
        raise ArtifactError(f"{str(path)!r} is empty")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if not fmt.looks_like(head):
        raise ArtifactError(f"{str(path)!r} is not {_a(fmt.title)} model "
                            "(its first bytes are not that format's)")
    return fmt.format


def _a(title: str) -> str:
    return f"{'an' if title[0] in 'AEIOU' else 'a'} {title}"


def for_file(path: str | Path) -> ExportFormat:
    return get(detect_format(path))


def read_metadata(path: str | Path, fmt: Format | None = None) -> dict[str, str]:
    """An artifact's edgeseq metadata, read on this host by its format (no session, no device)."""
    return get(fmt or detect_format(path)).read_metadata(path)


def runner_for(path: str | Path, *, device: str | None = None, threads: int | None = None):
    return for_file(path).runner(path, device=device, threads=threads)


__all__ = ["ExportFormat", "ExportSettings", "detect_format", "exportable_formats", "file_suffix", "for_file",
           "formats_not_installed", "get", "installed_formats", "read_metadata", "registered", "runner_for", "support_table"]
