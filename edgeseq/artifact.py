"""Artifact: the frozen record of one exported file (what a manifest lists and a report cites)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator


@dataclass(frozen=True)
class Artifact:
    path: str
    format: str
    precision: str
    model: str
    sha256: str
    size_bytes: int
    opset: int | None = None
    weights_sha256: str = ""
    exporter: str = ""
    export_seconds: float = 0.0
    parent: str | None = None  # sha256 of the artifact this one was derived from (e.g. fp32 -> int8)
    inputs: tuple[dict, ...] = ()
    outputs: tuple[dict, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    # derived (fp16 / int8) artifacts: the QuantConfig used and which op types compute in int8 / fp16 / fp32
    quantization: dict | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["inputs"], d["outputs"], d["notes"] = list(self.inputs), list(self.outputs), list(self.notes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Artifact":
        d = dict(d)
        for key in ("inputs", "outputs", "notes"):
            d[key] = tuple(d.get(key, ()))
        return cls(**d)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it into place only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
