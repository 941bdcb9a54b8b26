"""An .ort file's edgeseq metadata, read from its flatbuffer (ONNX Runtime's own schema bindings, no session):
the converter copies the source ONNX's metadata_props into Model.metadata_props."""

from __future__ import annotations

from pathlib import Path

from ..._lazy import require
from ...errors import ArtifactError
from .options import EXTRA

IDENTIFIER = b"ORTM"  # the flatbuffer file identifier, bytes 4:8


def read_metadata(path: str | Path) -> dict[str, str]:
    """Every metadata entry of the model (edgeseq.model, .precision, .weights_sha256, ...)."""
    data = _read(path)
    require("onnxruntime.tools.ort_format_model", EXTRA)  # puts ort_flatbuffers_py on sys.path
    from ort_flatbuffers_py.fbs.InferenceSession import InferenceSession

    if data[4:8] != IDENTIFIER:
        raise ArtifactError(f"{str(path)!r} is not an ORT format model (no ORTM identifier)")
    try:
        model = InferenceSession.GetRootAs(data, 0).Model()
        if model is None:
            raise ValueError("it holds no model")
        out = {}
        for i in range(model.MetadataPropsLength()):
            entry = model.MetadataProps(i)
            out[entry.Key().decode()] = entry.Value().decode()
        return out
    except Exception as exc:  # a truncated or corrupt flatbuffer: struct errors, IndexError, UnicodeDecodeError
        raise ArtifactError(f"{str(path)!r} is not a readable ORT format model ({type(exc).__name__}: "
                            f"{(str(exc).splitlines() or [''])[0][:120]})") from None


def _read(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ArtifactError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
