"""spec -> .mlpackage (mlprogram): torch.jit.trace, then coremltools' converter with the batch and time axes as
ct.RangeDim up to max_batch / max_time, at Core ML's fp32 or fp16 compute precision.

jit.trace, not torch.export: coremltools 9.0's torch.export path fails on nn.GRU. Core ML's own `gru` op defines the
reset gate's bias differently from PyTorch, so the converter lowers each GRU direction to a `while_loop` over T (the
structural check below counts them). The saved package is read back as a spec and checked (program, inputs and
their ranges, outputs); that check and edgeseq's metadata go into the model's user_defined_metadata."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from ..._quiet import native_stderr_quiet, python_chatter_quiet
from ..._version import __version__
from ...artifact import Artifact, artifact_for, atomic_dir
from ...enums import Format, Precision
from ...errors import ExportError, InputError, UnsupportedError
from ...models.spec import BATCH, TIME
from .metadata import load_spec
from .options import _QUIET, DEPLOYMENT_TARGET, MACOS_ONLY, PRECISIONS, CoremlOptions, can_predict, coremltools
from .structure import STRUCTURE_KEY, Structure, read_structure

_EXPORT_BATCH, _EXPORT_TIME = 2, 37  # the traced example: neither 1 nor a size the model declares
PROBE_BATCH, PROBE_TIME = 3, 50
_DTYPES = {"float32": np.float32, "float16": np.float16, "int32": np.int32, "int64": np.int32}  # Core ML has no int64
NOT_RUN = "converted, not run here"  # how the first note of an artifact no runtime here can run begins
def export(spec, out_path: str | Path, *, precision=Precision.FP32, options: CoremlOptions | None = None,
           weights=None) -> Artifact:
    """spec -> .mlpackage folder at out_path, written atomically (a staged folder replaces it at the end)."""
    import torch

    options = options or CoremlOptions()
    precision = Precision.parse(precision)
    if precision not in PRECISIONS:
        raise UnsupportedError(f"Core ML export at {precision.value} is not available (it has: "
                               f"{', '.join(p.value for p in PRECISIONS)})")
    if options.max_time < 1 or options.max_batch < 1:
        raise InputError("max_time and max_batch must be >= 1")
    ct = coremltools()
    from ...models.weights import state_dict_sha256

    module = spec.build(weights)
    weights_sha = state_dict_sha256(module)
    inputs = _input_types(ct, spec, options)
    batch = _EXPORT_BATCH if any(BATCH in t.shape for t in spec.inputs) else 1
    feed = spec.example_inputs(batch=batch, time=_EXPORT_TIME if spec.has_dynamic_time else None, source="random")
    args = tuple(torch.from_numpy(feed[name]) for name in spec.input_names)
    out_path = Path(out_path)
    started = time.perf_counter()
    try:
        with torch.no_grad(), python_chatter_quiet({**_QUIET, "torch": logging.ERROR}), \
                native_stderr_quiet(replay=False):
            traced = torch.jit.trace(module, args if len(args) > 1 else args[0], check_trace=False)
            model = ct.convert(traced, inputs=inputs, outputs=[ct.TensorType(name=o) for o in spec.output_names],
                               convert_to="mlprogram", compute_precision=_compute_precision(ct, precision),
                               minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET))
    except Exception as exc:  # noqa: BLE001 - any converter failure is one line naming the model
        raise ExportError(f"coremltools could not convert {spec.name}: {_why(exc)}") from None
    structure = read_structure(model.get_spec())
    _check_structure(structure, spec, options)
    meta = {
        "edgeseq.version": __version__,
        "edgeseq.model": spec.name,
        "edgeseq.weights_sha256": weights_sha,
        "edgeseq.precision": precision.value,
        "edgeseq.exporter": f"torch.jit.trace -> coremltools {ct.__version__} (mlprogram)",
        "edgeseq.dynamic_axes": json.dumps(spec.dynamic_axes, sort_keys=True),
        "edgeseq.inputs": json.dumps([t.to_dict() for t in spec.inputs]),
        "edgeseq.outputs": json.dumps([t.to_dict() for t in spec.outputs]),
        "edgeseq.max_time": str(options.max_time),
        "edgeseq.max_batch": str(options.max_batch),
        STRUCTURE_KEY: structure.to_json(),
        **({"edgeseq.source": spec.source} if spec.source else {}),
    }
    for key, value in meta.items():
        model.user_defined_metadata[key] = value
    model.short_description = spec.description or spec.name
    with atomic_dir(out_path) as staged:
        package = staged / "model.mlpackage"  # coremltools names what it writes by its suffix
        try:
            with python_chatter_quiet(_QUIET):
                model.save(str(package))
        except Exception as exc:  # noqa: BLE001 - a failed save is one line; the staged folder goes
            raise ExportError(f"coremltools could not save the .mlpackage: {_why(exc)}") from None
        saved = load_spec(package)  # the program loads back as a spec, with the structure and metadata it was given
        if read_structure(saved) != structure or saved.description.metadata.userDefined[STRUCTURE_KEY] != \
                meta[STRUCTURE_KEY]:
            raise ExportError("the saved .mlpackage does not read back as the converted program")
        if can_predict():
            _probe(ct, package, spec)  # from a path ending in .mlpackage, as Core ML names packages
        for item in package.iterdir():
            item.rename(staged / item.name)
        package.rmdir()
    elapsed = time.perf_counter() - started
    n_grus = sum(1 for m in module.modules() if isinstance(m, torch.nn.GRU))
    notes = [f"{NOT_RUN}: {MACOS_ONLY}"] if not can_predict() else []
    if n_grus:
        notes.append(f"{n_grus} nn.GRU -> {len(structure.while_loops)} Core ML while_loop(s) (Core ML's gru op "
                     "defines the reset-gate bias differently from PyTorch)")
    notes += [structure.note(), _PRECISION_NOTES[precision]]
    return artifact_for(out_path, Format.COREML, precision, spec, weights_sha256=weights_sha,
                        exporter=meta["edgeseq.exporter"], export_seconds=round(elapsed, 3), notes=tuple(notes))


_PRECISION_NOTES = {
    Precision.FP32: "compute precision fp32 (ct.precision.FLOAT32): runs on the CPU / GPU, not the Neural Engine",
    Precision.FP16: ("compute precision fp16 (ct.precision.FLOAT16), fp32 inputs and outputs cast at the edges: "
                     "what the Neural Engine runs"),
}


def _compute_precision(ct, precision: Precision):
    return ct.precision.FLOAT16 if precision is Precision.FP16 else ct.precision.FLOAT32


def _input_types(ct, spec, options: CoremlOptions) -> list:
    """ct.TensorType per declared input: batch / time axes as RangeDim(1, max), other sizes fixed."""
    bounds = {BATCH: options.max_batch, TIME: options.max_time}
    out = []
    for t in spec.inputs:
        dims = []
        for axis, d in enumerate(t.shape):
            if isinstance(d, int):
                dims.append(d)
            elif d in bounds:
                default = min(bounds[d], spec.default_time if d == TIME else 1)
                dims.append(ct.RangeDim(lower_bound=1, upper_bound=bounds[d], default=default))  # no symbol:
                # coremltools keeps symbol names process-wide, so a second export naming "batch" would fail
            else:
                raise UnsupportedError(f"{spec.name}: axis {axis} of {t.name!r} is {d!r}; Core ML export gives "
                                       "ranges to the batch and time axes only")
        dtype = _DTYPES.get(t.dtype)
        if dtype is None:
            raise UnsupportedError(f"{spec.name}: input {t.name!r} is {t.dtype}; Core ML takes float32, float16 and "
                                   "int32 inputs")
        out.append(ct.TensorType(name=t.name, shape=ct.Shape(tuple(dims)), dtype=dtype))
    return out


def _check_structure(structure: Structure, spec, options: CoremlOptions) -> None:
    """The converted program declares the spec's inputs and outputs, and its ranges are the ones asked for."""
    if [t.name for t in structure.inputs] != spec.input_names or \
            [t.name for t in structure.outputs] != spec.output_names:
        raise ExportError(f"the Core ML program's inputs / outputs {[t.name for t in structure.inputs]} / "
                          f"{[t.name for t in structure.outputs]} are not the model's {spec.input_names} / "
                          f"{spec.output_names}")
    bounds = {BATCH: options.max_batch, TIME: options.max_time}
    for t, got in zip(spec.inputs, structure.inputs):
        for axis, d in enumerate(t.shape):
            want = (1, bounds[d]) if d in bounds else (d, d)
            have = got.ranges[axis] if axis < len(got.ranges) else (got.shape[axis],) * 2
            if tuple(have) != want:
                raise ExportError(f"axis {axis} of {t.name!r} is {have[0]}..{have[1]} in the Core ML program, "
                                  f"expected {want[0]}..{want[1]}")


def _probe(ct, path: Path, spec) -> None:
    """macOS: the fresh package predicts at another batch and T with outputs of the declared shapes."""
    from .runner import CoremlRunner

    batch = PROBE_BATCH if any(BATCH in t.shape for t in spec.inputs) else 1
    time_ = PROBE_TIME if spec.has_dynamic_time else None
    feed = spec.example_inputs(batch=batch, time=time_, source="random")
    with CoremlRunner(path, device="cpu") as runner:
        outs = runner.infer(feed)
    for o in spec.outputs:
        want = spec.shape_for(o, batch, time_ or spec.default_time)
        if tuple(outs[o.name].shape) != want:
            raise ExportError(f"the .mlpackage's output {o.name!r} has shape {list(outs[o.name].shape)} at "
                              f"batch={batch} T={time_}, expected {list(want)}")


def _why(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {(lines[0] if lines else '')[:300]}"
