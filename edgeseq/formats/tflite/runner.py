"""TfliteRunner: a .tflite on the LiteRT interpreter (XNNPACK, the CPU engine Android and iOS apps run)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np

from ..._quiet import native_stderr_quiet, quiet_import
from ...enums import Format
from ...errors import ArtifactError, InputError, MissingExtraError, RuntimeFailure, UnsupportedError
from ...runner import Runner
from ...tensors import TensorSpec
from .metadata import read_metadata
from .options import _SIGNATURE, EXTRA, _narrowed

# ---- runtime --------------------------------------------------------------------------------------------------------


def _interpreter() -> tuple[str, type]:
    """(runtime name, Interpreter class): ai-edge-litert's, or the older tflite_runtime's where only that is
    installed (e.g. a device image); the name is what reports show as the runtime."""
    try:
        return "litert", quiet_import("ai_edge_litert.interpreter").Interpreter
    except ImportError:
        pass
    try:
        return "tflite_runtime", quiet_import("tflite_runtime.interpreter").Interpreter
    except ImportError:
        raise MissingExtraError(
            "neither ai-edge-litert nor tflite-runtime is installed; install it with: "
            f"pip install 'edgeseq[{EXTRA}]' (to run .tflite files only, not export them: pip install ai-edge-litert)"
        ) from None


def _interpreter_class() -> type:
    return _interpreter()[1]


def runtime_name() -> str:
    return _interpreter()[0]


def runtime_devices() -> list[str]:
    _interpreter_class()
    return ["cpu"]


class TfliteRunner(Runner):
    """LiteRT interpreter (XNNPACK delegate on CPU). Inputs are resized only when their shape changes.

    A LiteRT interpreter is not thread-safe; calls are serialized with a lock.
    """

    format = Format.TFLITE

    def __init__(self, path: str | Path, *, device: str | None = None, threads: int | None = None):
        if device not in (None, "cpu"):
            raise UnsupportedError(f"the LiteRT runner runs on cpu (XNNPACK) here, not {device!r}")
        super().__init__(device="cpu", threads=threads)
        self.path = Path(path)
        self._interp = None
        self._lock = threading.Lock()
        self._meta: dict[str, str] = {}

    @property
    def runtime(self) -> str:
        return f"{runtime_name()}-xnnpack-cpu"

    @property
    def metadata(self) -> dict[str, str]:
        self.load()
        return dict(self._meta)

    @property
    def max_time(self) -> int | None:
        self.load()
        value = self._meta.get("edgeseq.max_time")
        return int(value) if value else None

    def _load(self):
        interpreter_cls = _interpreter_class()
        if not self.path.is_file():
            raise ArtifactError(f"{str(self.path)!r} does not exist or is not a file")
        try:
            kwargs = {"model_path": str(self.path)}
            if self.threads:
                kwargs["num_threads"] = self.threads
            self._interp = interpreter_cls(**kwargs)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ArtifactError(f"LiteRT cannot load {str(self.path)!r}: {first[:300]}") from None
        self._meta = read_metadata(self.path)
        declared_in = _declared(self._meta, "edgeseq.inputs", self.path)
        declared_out = _declared(self._meta, "edgeseq.outputs", self.path)
        signatures = self._interp.get_signature_list()
        if _SIGNATURE in signatures:
            runner = self._interp.get_signature_runner(_SIGNATURE)
            in_details = [runner.get_input_details()[n] for n in signatures[_SIGNATURE]["inputs"]]
            out_details = [runner.get_output_details()[n] for n in signatures[_SIGNATURE]["outputs"]]
        else:
            in_details, out_details = self._interp.get_input_details(), self._interp.get_output_details()
        in_names = [d["name"] for d in declared_in] if declared_in and len(declared_in) == len(in_details) else \
            [d.get("name", f"input_{i}") for i, d in enumerate(in_details)]
        out_names = [d["name"] for d in declared_out] if declared_out and len(declared_out) == len(out_details) \
            else [d.get("name", f"output_{i}") for i, d in enumerate(out_details)]
        self._in_index = [d["index"] for d in in_details]
        self._out_index = [d["index"] for d in out_details]
        specs = []
        self._in_casts, self._out_casts = [], []
        for i, (name, det) in enumerate(zip(in_names, in_details)):
            sig = list(det.get("shape_signature", det["shape"]))
            dtype = np.dtype(det["dtype"]).name
            if declared_in and len(declared_in) == len(in_details):
                dims = tuple(declared_in[i]["shape"])
                dtype, cast = _narrowed(declared_in[i].get("dtype"), dtype)
            else:
                dims, cast = tuple(None if s < 0 else int(s) for s in sig), None
            self._in_casts.append(cast)
            specs.append(TensorSpec(name, dims, dtype))
        for i, det in enumerate(out_details):
            declared = declared_out[i].get("dtype") if declared_out and len(declared_out) == len(out_details) else None
            self._out_casts.append(_narrowed(declared, np.dtype(det["dtype"]).name)[0] if declared else None)
        self._shapes = [tuple(d["shape"]) for d in in_details]
        self._allocated = False
        return tuple(specs), tuple(out_names)

    def _infer(self, feed):
        max_time = int(self._meta["edgeseq.max_time"]) if "edgeseq.max_time" in self._meta else None
        max_batch = int(self._meta["edgeseq.max_batch"]) if "edgeseq.max_batch" in self._meta else None
        arrays = []
        for spec in self._inputs:
            value = feed[spec.name]
            for axis, dim in enumerate(spec.shape):
                if dim == "time" and max_time is not None and value.shape[axis] > max_time:
                    raise InputError(f"{self.path.name} serves sequences up to T={max_time}; got T={value.shape[axis]} "
                                     f"(re-export with a larger max_time, or split the input)")
                if dim == "batch" and max_batch is not None and value.shape[axis] > max_batch:
                    raise InputError(f"{self.path.name} serves batches up to {max_batch}; got {value.shape[axis]}")
            cast = self._in_casts[len(arrays)]
            if cast is not None:  # int64 declared, int32 in the file (the converter narrows integers)
                if value.size and (value.min() < np.iinfo(cast).min or value.max() > np.iinfo(cast).max):
                    raise InputError(f"input {spec.name!r} has values outside {np.dtype(cast).name}, which "
                                     f"{self.path.name} takes")
                value = value.astype(cast)
            arrays.append(np.ascontiguousarray(value))
        with self._lock:
            interp = self._interp
            try:
                changed = False
                for k, (index, arr) in enumerate(zip(self._in_index, arrays)):
                    if tuple(arr.shape) != self._shapes[k]:
                        interp.resize_tensor_input(index, list(arr.shape), strict=False)
                        self._shapes[k] = tuple(arr.shape)
                        changed = True
                if not self._allocated:  # the first applies XNNPACK, which says so on stderr ("INFO: Created ...")
                    with native_stderr_quiet(replay=False):
                        interp.allocate_tensors()
                    self._allocated = True
                elif changed:
                    interp.allocate_tensors()
                for index, arr in zip(self._in_index, arrays):
                    interp.set_tensor(index, arr)
                interp.invoke()
                outs = [np.array(interp.get_tensor(i)) for i in self._out_index]
            except Exception as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise RuntimeFailure(f"LiteRT failed on {self.path.name}: {first[:300]}") from None
        outs = [o.astype(c) if c is not None and o.dtype != c else o for o, c in zip(outs, self._out_casts)]
        return dict(zip(self._outputs, outs))

    def _close(self):
        self._interp = None


def runner(path, *, device=None, threads=None) -> TfliteRunner:
    return TfliteRunner(path, device=device, threads=threads)


def declared_names(meta: dict, key: str) -> list[str] | None:
    """The tensor names edgeseq stamped under `key` (edgeseq.inputs / edgeseq.outputs), in signature order; None
    where there are none or they are unreadable (then the runtime's own names are all there is)."""
    tensors = declared_tensors(meta, key)
    return [name for name, _ in tensors] if tensors else None


def declared_tensors(meta: dict, key: str) -> list[tuple[str, str | None]] | None:
    """(name, declared dtype) of each tensor edgeseq stamped under `key`, in signature order; None as above."""
    try:
        value = _declared(meta, key, Path("?"))
    except ArtifactError:
        return None
    return [(d["name"], d.get("dtype")) for d in value] if value else None


def narrowed(declared: str | None, actual: str) -> str | None:
    """The dtype a file narrowed a declared one to (LiteRT's converter: int64 -> int32), which a runner elsewhere (a
    device) must cast to on the way in and back from on the way out; None when it takes the declared dtype."""
    return _narrowed(declared, actual)[1]


def _declared(meta: dict, key: str, path: Path) -> list[dict] | None:
    """The tensor list edgeseq stamped into the metadata, validated: a corrupted entry is an ArtifactError, not a
    crash (found by fuzzing)."""
    text = meta.get(key) or "null"
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, TypeError, ValueError):
        raise ArtifactError(f"{str(path)!r} has corrupted edgeseq metadata ({key} is not JSON)") from None
    if value is None:
        return None
    shapes_ok = isinstance(value, list) and all(
        isinstance(d, dict) and isinstance(d.get("name"), str) and isinstance(d.get("shape", []), list) for d in value)
    if not shapes_ok:
        raise ArtifactError(f"{str(path)!r} has corrupted edgeseq metadata ({key} is not a list of tensors)")
    return value
