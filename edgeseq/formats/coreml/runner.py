"""CoremlRunner: an .mlpackage through coremltools' MLModel.predict (the Core ML framework, so macOS only).

Elsewhere load() is the one-line UnsupportedError naming macOS and the ssh device route; the feed / fetch conversion
(dtype casts, the RangeDim bounds, outputs in declared order) is plain numpy and is tested with a fake model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...enums import Format
from ...errors import ArtifactError, InputError, RuntimeFailure, UnsupportedError
from ...runner import Runner
from ...tensors import TensorSpec
from .options import MACOS_ONLY, RUNTIME, can_predict

# runner device -> ct.ComputeUnit member: cpu keeps every op on the CPU; gpu / ane let Core ML place ops there
COMPUTE_UNITS = {"cpu": "CPU_ONLY", "gpu": "CPU_AND_GPU", "ane": "CPU_AND_NE", "all": "ALL"}
_CASTS = {"float32": "float32", "float16": "float16", "int32": "int32", "int64": "int32"}  # Core ML has no int64


def runtime_devices() -> list[str]:
    """Where the matrix runs a package here: Core ML's CPU on macOS with coremltools; nowhere else (the artifact
    is then listed as converted, not run)."""
    from ..._lazy import installed

    return ["cpu"] if can_predict() and installed("coremltools") else []


class CoremlRunner(Runner):
    """Core ML via coremltools. `threads` is recorded, not applied: Core ML schedules its own threads."""

    format = Format.COREML

    def __init__(self, path: str | Path, *, device: str | None = None, threads: int | None = None):
        device = device or "cpu"
        if device not in COMPUTE_UNITS:
            raise UnsupportedError(f"Core ML runs on {', '.join(COMPUTE_UNITS)} (its compute units), not {device!r}")
        super().__init__(device=device, threads=threads)
        self.path = Path(path)
        self._model = None
        self._meta: dict[str, str] = {}
        self._casts: dict[str, str] = {}
        self._limits: dict[str, int] = {}

    @property
    def runtime(self) -> str:
        return f"{RUNTIME}-{self.device}"

    @property
    def metadata(self) -> dict[str, str]:
        self.load()
        return dict(self._meta)

    def _load(self):
        from .metadata import load_spec
        from .structure import read_structure

        if not self.path.is_dir():
            raise ArtifactError(f"{str(self.path)!r} does not exist or is not an .mlpackage folder")
        spec = load_spec(self.path)
        if not can_predict():
            raise UnsupportedError(MACOS_ONLY)
        try:
            structure = read_structure(spec)
        except ValueError as exc:
            raise ArtifactError(f"{str(self.path)!r}: {exc}") from None
        self._meta = dict(spec.description.metadata.userDefined)
        self._model = self._open()
        inputs, outputs = io_specs(structure, self._meta)
        self._casts = {t.name: _CASTS.get(t.dtype, t.dtype) for t in inputs}
        self._limits = {k: int(self._meta[f"edgeseq.max_{k}"]) for k in ("time", "batch")
                        if self._meta.get(f"edgeseq.max_{k}", "").isdigit()}
        return inputs, outputs

    def _open(self):
        """The MLModel on this runner's compute units (a test swaps in a fake model object here)."""
        from .options import coremltools

        ct = coremltools()
        try:
            return ct.models.MLModel(str(self.path), compute_units=getattr(ct.ComputeUnit, COMPUTE_UNITS[self.device]))
        except Exception as exc:  # noqa: BLE001 - Core ML's load errors are one ArtifactError line
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ArtifactError(f"Core ML cannot load {str(self.path)!r}: {first[:300]}") from None

    def _infer(self, feed):
        prepared = to_coreml(self._inputs, self._casts, self._limits, feed, self.path.name)
        try:
            result = self._model.predict(prepared)
        except Exception as exc:  # noqa: BLE001 - a prediction failure is one RuntimeFailure line
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise RuntimeFailure(f"Core ML failed on {self.path.name}: {first[:300]}") from None
        return from_coreml(self._outputs, result, self.path.name)

    def _close(self):
        self._model = None


def io_specs(structure, meta: dict[str, str]) -> tuple[tuple[TensorSpec, ...], tuple[str, ...]]:
    """The runner's inputs: the names and axes edgeseq declared (batch / time named), else the program's own with
    its ranges as free axes; outputs in the program's order."""
    try:
        declared = {d["name"]: d for d in json.loads(meta.get("edgeseq.inputs") or "[]")}
    except (ValueError, TypeError, KeyError):
        declared = {}
    inputs = []
    for t in structure.inputs:
        d = declared.get(t.name)
        if d is not None:
            inputs.append(TensorSpec(t.name, tuple(d["shape"]), d.get("dtype", t.dtype)))
        else:
            dims = tuple(None if r[0] != r[1] else r[0] for r in t.ranges) if t.ranges else t.shape
            inputs.append(TensorSpec(t.name, dims, t.dtype))
    return tuple(inputs), tuple(t.name for t in structure.outputs)


def to_coreml(inputs, casts: dict[str, str], limits: dict[str, int], feed: dict, where: str) -> dict:
    """A validated feed as Core ML takes it: within the RangeDim bounds (one-line InputError past them), in the
    program's dtypes (int64 lengths as int32, in range), contiguous."""
    out = {}
    for spec in inputs:
        value = feed[spec.name]
        for axis, dim in enumerate(spec.shape):
            limit = limits.get(dim) if isinstance(dim, str) else None
            if limit is not None and value.shape[axis] > limit:
                what = "sequences up to T" if dim == "time" else "batches up to"
                raise InputError(f"{where} serves {what}={limit}; got {value.shape[axis]} (re-export with a larger "
                                 f"max_{dim}, or split the input)")
        cast = casts.get(spec.name, str(value.dtype))
        if cast != str(value.dtype):
            if np.issubdtype(value.dtype, np.integer) and value.size and (
                    value.min() < np.iinfo(cast).min or value.max() > np.iinfo(cast).max):
                raise InputError(f"input {spec.name!r} has values outside {cast}, which {where} takes")
            value = value.astype(cast)
        out[spec.name] = np.ascontiguousarray(value)
    return out


def from_coreml(outputs: tuple[str, ...], result: dict, where: str) -> dict[str, np.ndarray]:
    """predict()'s dict as numpy arrays in the declared output order; fp16 outputs widened to fp32 as the other
    runtimes give them."""
    missing = [name for name in outputs if name not in result]
    if missing:
        raise RuntimeFailure(f"Core ML returned no {', '.join(map(repr, missing))} for {where} "
                             f"(it returned {', '.join(map(repr, sorted(result)))})")
    out = {}
    for name in outputs:
        value = np.asarray(result[name])
        out[name] = value.astype(np.float32) if value.dtype == np.float16 else value
    return out
