"""A .tflite's edgeseq metadata: `edgeseq.*` entries of the flatbuffer's Model.metadata table (name -> buffer),
written with LiteRT's schema module and read with the flatbuffers package alone (tflite_runtime has no schema)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..._lazy import require
from ...artifact import atomic_path

EXTRA = "tflite"
_META_PREFIX = "edgeseq."
_MODEL_BUFFERS, _MODEL_METADATA = 12, 16  # vtable slots of Model.buffers / Model.metadata (schema v3)


def stamp(content: bytes, meta: dict[str, str]) -> bytes:
    """Add `edgeseq.*` entries to the model's metadata table (name -> buffer), replacing older ones."""
    schema = require("ai_edge_litert.schema_py_generated", EXTRA)
    import flatbuffers

    model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    model.metadata = [m for m in (model.metadata or []) if not m.name.decode().startswith(_META_PREFIX)]
    for key, value in meta.items():
        buf = schema.BufferT()
        buf.data = np.frombuffer(value.encode(), dtype=np.uint8)
        model.buffers.append(buf)
        entry = schema.MetadataT()
        entry.name = (_META_PREFIX + key).encode()
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    builder = flatbuffers.Builder(len(content) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def read_metadata(path: str | Path) -> dict[str, str]:
    return read_metadata_bytes(Path(path).read_bytes())


def update_metadata(path: str | Path, items: dict[str, str]) -> None:
    """Add or replace `edgeseq.*` entries in place, atomically, keeping the others."""
    content = Path(path).read_bytes()
    updated = stamp(content, {**read_metadata_bytes(content), **items})
    with atomic_path(path) as staged:
        staged.write_bytes(updated)


def read_metadata_bytes(data: bytes) -> dict[str, str]:
    """The `edgeseq.*` metadata entries, read with the flatbuffers package alone (no LiteRT schema module), so a
    runner on tflite_runtime (which ships no schema) reads them too. Anything unreadable gives {}."""
    fb = require("flatbuffers", EXTRA)
    from flatbuffers import number_types as nt

    buf = bytes(data)
    u32, u64 = nt.Uint32Flags, nt.Uint64Flags

    def tables(t, slot):  # a vector of tables at vtable slot `slot`
        off = t.Offset(slot)
        if not off:
            return []
        start = t.Vector(off)
        return [fb.table.Table(buf, t.Indirect(start + 4 * i)) for i in range(t.VectorLen(off))]

    try:
        model = fb.table.Table(buf, fb.encode.Get(nt.UOffsetTFlags.packer_type, buf, 0))
        buffers = tables(model, _MODEL_BUFFERS)
        out = {}
        for entry in tables(model, _MODEL_METADATA):
            name_off = entry.Offset(4)
            name = entry.String(entry.Pos + name_off).decode() if name_off else ""
            if not name.startswith(_META_PREFIX):
                continue
            b = buffers[entry.GetSlot(6, 0, u32)]
            offset, size = b.GetSlot(6, 0, u64), b.GetSlot(8, 0, u64)
            if offset > 1:  # stored after the flatbuffer (large-model layout)
                raw = buf[offset:offset + size]
            else:
                data_off = b.Offset(4)
                start = b.Vector(data_off) if data_off else 0
                raw = buf[start:start + b.VectorLen(data_off)] if data_off else b""
            out[name] = raw.decode()
        return out
    except Exception:
        return {}
