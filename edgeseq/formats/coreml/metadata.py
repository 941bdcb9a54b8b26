"""An .mlpackage's edgeseq metadata: `edgeseq.*` entries of the model spec's user_defined_metadata, read and written
in the package's protobuf (Manifest.json names the root model file) with coremltools' proto module; no Core ML
framework, so this works on any OS."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..._lazy import require
from ...artifact import atomic_dir
from ...errors import ArtifactError
from .options import EXTRA

_PREFIX = "edgeseq."
MANIFEST = "Manifest.json"


def looks_like_package(path: Path) -> bool:
    """A folder with a Manifest.json naming a root model: the cheap check behind the .mlpackage suffix."""
    try:
        manifest = json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("rootModelIdentifier") in manifest.get("itemInfoEntries", {})


def model_file(path: str | Path) -> Path:
    """The package's root model spec file (Data/com.apple.CoreML/model.mlmodel for coremltools' packages)."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"{str(path)!r} is not a Core ML package (an .mlpackage is a folder)")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        entry = manifest["itemInfoEntries"][manifest["rootModelIdentifier"]]
        found = path / "Data" / entry["path"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{str(path)!r} is not a readable Core ML package (its {MANIFEST}: "
                            f"{type(exc).__name__})") from None
    if not found.is_file():
        raise ArtifactError(f"{str(path)!r} is not a readable Core ML package (no {entry['path']})")
    return found


def load_spec(path: str | Path):
    """The Model protobuf of a package, or a one-line ArtifactError for a corrupt one."""
    require("coremltools", EXTRA, quiet=True)
    from coremltools.proto import Model_pb2

    data = model_file(path).read_bytes()
    spec = Model_pb2.Model()
    try:
        spec.ParseFromString(data)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError on a truncated / foreign file
        raise ArtifactError(f"{str(path)!r} is not a readable Core ML package ({type(exc).__name__}: "
                            f"{(str(exc).splitlines() or [''])[0][:120]})") from None
    return spec


def read_metadata(path: str | Path) -> dict[str, str]:
    """Every user-defined metadata entry (edgeseq.model, .precision, ... and coremltools' own)."""
    return dict(load_spec(path).description.metadata.userDefined)


def update_metadata(path: str | Path, items: dict[str, str]) -> None:
    """Add or replace `edgeseq.*` entries in place: the package is copied, its spec rewritten, and the copy replaces
    it only when that worked."""
    path = Path(path)
    spec = load_spec(path)
    for key, value in items.items():
        spec.description.metadata.userDefined[key if key.startswith(_PREFIX) else _PREFIX + key] = str(value)
    relative = model_file(path).relative_to(path)
    with atomic_dir(path) as staged:
        shutil.copytree(path, staged, dirs_exist_ok=True)
        (staged / relative).write_bytes(spec.SerializeToString())
