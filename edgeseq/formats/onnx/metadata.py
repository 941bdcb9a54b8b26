"""An ONNX artifact's edgeseq metadata, read and updated with onnx alone (no session)."""

from __future__ import annotations

from pathlib import Path

from ..._lazy import require
from ...artifact import atomic_path
from ...errors import ArtifactError
from .options import EXTRA, _why


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
