"""Artifact: the frozen record of one exported file (what a manifest lists and a report cites)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from .enums import Format, Precision
from .errors import OutputError


@dataclass(frozen=True)
class Artifact:
    path: str
    format: Format  # strings are parsed (from_dict, older callers); to_dict writes the values
    precision: Precision
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

    def __post_init__(self):
        object.__setattr__(self, "format", Format.parse(self.format))
        object.__setattr__(self, "precision", Precision.parse(self.precision))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["format"], d["precision"] = self.format.value, self.precision.value
        d["inputs"], d["outputs"], d["notes"] = list(self.inputs), list(self.outputs), list(self.notes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Artifact":
        d = dict(d)
        for key in ("inputs", "outputs", "notes"):
            d[key] = tuple(d.get(key, ()))
        return cls(**d)


def artifact_for(path: str | Path, fmt, precision, spec, **fields) -> "Artifact":
    """The record of a file just written for `spec`: checksum, size and the model's declared I/O filled in."""
    path = Path(path)
    return Artifact(path=str(path), format=Format.parse(fmt), precision=Precision.parse(precision), model=spec.name,
                    sha256=sha256_path(path), size_bytes=size_path(path),
                    inputs=tuple(t.to_dict() for t in spec.inputs), outputs=tuple(t.to_dict() for t in spec.outputs),
                    **fields)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_path(path: str | Path) -> str:
    """sha256_file for a file; for a folder artifact (Core ML's .mlpackage), the digest of its files' relative paths
    and contents in sorted order, so the same tree always gives the same digest."""
    path = Path(path)
    if not path.is_dir():
        return sha256_file(path)
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{item.relative_to(path).as_posix()}\0{sha256_file(item)}\0".encode())
    return digest.hexdigest()


def size_path(path: str | Path) -> int:
    """Bytes of a file, or of every file in a folder artifact."""
    path = Path(path)
    if not path.is_dir():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """atomic_path for a folder artifact: yield a fresh temporary folder beside `final` (named like atomic_path's
    files, so remove_stale clears one a killed run left); it replaces `final` only if the block succeeds."""
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(final.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.{os.getpid()}.", suffix=".partial", dir=final.parent))
    except OSError as exc:
        raise _output_error(final, exc) from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; a finished artifact gets the usual permissions
    old = tmp.with_name(tmp.name[: -len(".partial")] + "-old.partial")  # the same pid for remove_stale
    try:
        yield tmp
        try:
            if final.is_dir() and not final.is_symlink():
                os.replace(final, old)  # a folder cannot be renamed over a non-empty one: move the old aside first
            elif final.exists() or final.is_symlink():
                final.unlink()
            os.replace(tmp, final)
        except OSError as exc:
            if old.exists() and not final.exists():
                os.replace(old, final)
            raise _output_error(final, exc) from None
    finally:
        for leftover in (tmp, old):
            shutil.rmtree(leftover, ignore_errors=True)


@contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it into place only if the block succeeds."""
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(final.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.{os.getpid()}.", suffix=".partial", dir=final.parent)
    except OSError as exc:
        raise _output_error(final, exc) from None
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; a finished artifact gets the usual permissions
    try:
        yield tmp_path
        try:
            os.replace(tmp_path, final)
        except OSError as exc:
            raise _output_error(final, exc) from None
    finally:
        for leftover in tmp_path.parent.glob(tmp_path.name + "*"):  # also side files a converter wrote (.data)
            leftover.unlink(missing_ok=True)


STAGING_PREFIX = ".edgeseq-staging-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(folder: Path) -> list[Path]:
    """Delete leftovers of killed runs in `folder`: *.partial files and staging folders whose process is gone.

    Their names carry the writer's pid, so a run that is still going (in this or another process) is left alone.
    """
    removed = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        name = entry.name
        if ".partial" in name and name.startswith("."):  # .<final>.<pid>.<random>.partial[.data]
            pid_text = name.split(".partial")[0].split(".")[-2]
        elif name.startswith(STAGING_PREFIX):
            pid_text = name[len(STAGING_PREFIX):].split("-")[0]
        else:
            continue
        if pid_text.isdigit() and not _pid_alive(int(pid_text)):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _output_error(path: Path, exc: OSError) -> OutputError:
    return OutputError(f"cannot write {str(path)!r}: {exc.strerror or exc}")


def validate_output_file(path: str | Path, what: str) -> None:
    """Fail now, in one line, when the file `path` could not be written: before the work, not after it."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {str(path)!r} is a directory; give a file name")
    _check_creatable(path.parent, what, path)


def validate_output_dir(path: str | Path, what: str) -> None:
    """Fail now, in one line, when the folder `path` could not be created or written into."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {str(path)!r} exists and is not a directory")
    _check_creatable(path, what, path)


def _check_creatable(folder: Path, what: str, target: Path) -> None:
    """The nearest existing folder above (or at) `folder` must be a folder we can create a file in: probed with a
    real temporary file, since permission bits say nothing for root or for /proc and read-only mounts."""
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # exists() follows links: mkdir would fail on it later, after the work
            raise OutputError(f"{what} {str(target)!r}: {str(existing)!r} is a broken symlink")
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{what} {str(target)!r}: {str(existing)!r} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".edgeseq-probe-", dir=existing)
    except OSError as exc:
        raise OutputError(f"{what} {str(target)!r}: cannot write in {str(existing)!r} ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


def make_dirs(folder: Path) -> list[Path]:
    """mkdir -p that returns the folders it created (outermost first), so a failed run can remove exactly those."""
    missing = [p for p in [folder, *folder.parents] if not p.exists()][::-1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _output_error(folder, exc) from None
    return missing


def remove_created(created: list[Path]) -> None:
    """Undo make_dirs: remove the folders it created, innermost first, where they are still empty."""
    for path in reversed(created):
        try:
            path.rmdir()
        except OSError:
            return  # not empty (someone else wrote there) or gone: leave it and everything above it
