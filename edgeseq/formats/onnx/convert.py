"""ONNX export with torch.onnx: the graph, its metadata, and a check that declared axes stayed symbolic.

Exporter choice (measured on torch 2.13): the TorchScript-based exporter (dynamo=False) keeps the time axis
symbolic through nn.GRU (one ONNX GRU op) and nn.MaxPool1d; the torch.export-based exporter specializes T there.
TorchScript is deprecated upstream, so it is the default *deliberately* and the dynamo path stays selectable; either
way the exported graph is checked (declared axes must stay symbolic, and ONNX Runtime must run it at another batch
and T) and a fixed axis is an ExportError, never a surprise at run time."""

from __future__ import annotations

import io
import json
import logging
import time
import warnings
from contextlib import redirect_stdout
from pathlib import Path

from ..._lazy import require
from ..._quiet import library_stderr_quiet
from ..._version import __version__
from ...artifact import artifact_for, atomic_path
from ...enums import Format, Precision
from ...errors import ExportError, UnsupportedError
from .options import EXTRA, OnnxExporter, OnnxOptions, _why
from .session import load_error, new_session

PROBE_BATCH, PROBE_TIME = 3, 50
_EXPORT_BATCH, _EXPORT_TIME = 2, 37  # export-time example: neither 1 nor a sweep value, so nothing gets baked in


def export(spec, out_path: str | Path, *, precision=Precision.FP32, options: OnnxOptions = OnnxOptions(), weights=None):
    """spec -> .onnx with dynamic batch/time, simplified, stamped with edgeseq metadata; written atomically.

    fp16 / int8 artifacts are derived from this one (derive.export_derived)."""
    import torch

    onnx = require("onnx", EXTRA)
    precision = Precision.parse(precision)
    if precision is not Precision.FP32:
        raise UnsupportedError(f"convert writes fp32; {precision.value} is derived from it (formats.onnx.derive)")
    if not 13 <= options.opset <= 23:
        raise UnsupportedError(f"opset {options.opset} is outside the range this exporter supports (13..23)")
    from ...models.weights import state_dict_sha256

    module = spec.build(weights)
    batch = _EXPORT_BATCH if "batch" in spec.inputs[0].shape else None
    feed = spec.example_inputs(batch=batch or 1, time=_EXPORT_TIME if spec.has_dynamic_time else None, source="random")
    args = tuple(torch.from_numpy(feed[name]) for name in spec.input_names)
    out_path = Path(out_path)
    started = time.perf_counter()
    with atomic_path(out_path) as tmp:
        _torch_export(torch, module, args, tmp, spec, options)
        try:
            model = onnx.load(str(tmp))
        except Exception as exc:  # the converter wrote something ONNX cannot parse
            raise ExportError(f"torch.onnx.export wrote an unreadable model: {exc}") from None
        if options.simplify:
            model = _simplify(model)
        _stamp(onnx, model, spec, state_dict_sha256(module), options, precision)
        _check_axes_symbolic(model, spec)
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
        _probe_dynamic_shapes(tmp, spec)
    elapsed = time.perf_counter() - started
    return artifact_for(
        out_path, Format.ONNX, precision, spec,
        opset=options.opset,
        weights_sha256=state_dict_sha256(module),
        exporter=f"torch.onnx ({options.exporter.value})" + (" + onnxslim" if options.simplify else ""),
        export_seconds=round(elapsed, 3),
    )


def _torch_export(torch, module, args, path: Path, spec, options: OnnxOptions) -> None:
    kwargs = dict(
        input_names=spec.input_names,
        output_names=spec.output_names,
        opset_version=options.opset,
    )
    torch_onnx_log = logging.getLogger("torch.onnx")
    level = torch_onnx_log.level
    torch_onnx_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()), library_stderr_quiet():
            warnings.simplefilter("ignore")  # deprecation + tracer warnings: the shape probe below is the real check
            if options.exporter is OnnxExporter.TORCHSCRIPT:
                torch.onnx.export(
                    module, args, str(path), dynamo=False, dynamic_axes=spec.dynamic_axes, do_constant_folding=True,
                    **kwargs,
                )
            else:
                require("onnxscript", EXTRA)
                torch.onnx.export(module, args, str(path), dynamo=True, dynamic_axes=spec.dynamic_axes,
                                  external_data=False, **kwargs)
    except Exception as exc:
        raise ExportError(f"torch.onnx.export ({options.exporter.value}) failed for {spec.name}: {_why(exc)}") from None
    finally:
        torch_onnx_log.setLevel(level)


def _simplify(model):
    onnxslim = require("onnxslim", EXTRA)
    with redirect_stdout(io.StringIO()):
        return onnxslim.slim(model)


def _stamp(onnx, model, spec, weights_sha: str, options: OnnxOptions, precision: Precision) -> None:
    meta = {
        "edgeseq.version": __version__,
        "edgeseq.model": spec.name,
        "edgeseq.weights_sha256": weights_sha,
        "edgeseq.precision": precision.value,
        "edgeseq.exporter": options.exporter.value,
        "edgeseq.dynamic_axes": json.dumps(spec.dynamic_axes, sort_keys=True),
        **({"edgeseq.source": spec.source} if spec.source else {}),
    }
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    model.producer_name = "edgeseq"
    model.producer_version = __version__


def _check_axes_symbolic(model, spec) -> None:
    for value in list(model.graph.input) + list(model.graph.output):
        declared = spec.dynamic_axes.get(value.name, {})
        dims = value.type.tensor_type.shape.dim
        for axis, name in declared.items():
            if axis < len(dims) and dims[axis].HasField("dim_value"):
                raise ExportError(
                    f"the exported graph fixed the {name} axis of {value.name!r} to {dims[axis].dim_value}; "
                    f"this exporter specialized it (try --exporter torchscript)"
                )


def _probe_dynamic_shapes(path: Path, spec) -> None:
    """Run the fresh file once at another batch and T: a graph that baked in a size fails here, at export."""
    dynamic_batch = "batch" in spec.inputs[0].shape
    if not (spec.has_dynamic_time or dynamic_batch):
        return
    ort = require("onnxruntime", EXTRA)
    batch = PROBE_BATCH if dynamic_batch else 1
    feed = spec.example_inputs(batch=batch, time=PROBE_TIME if spec.has_dynamic_time else None, source="random")
    try:
        quiet = ort.SessionOptions()
        quiet.log_severity_level = 4
        session = new_session(ort, str(path), quiet, ["CPUExecutionProvider"])
        outs = session.run(None, feed)
    except Exception as exc:
        raise ExportError(
            f"the exported graph does not run at batch={batch} T={PROBE_TIME}: a dynamic axis was specialized "
            f"during export ({load_error(exc)[:200]})"
        ) from None
    for out_spec, out in zip(spec.outputs, outs):
        want = spec.shape_for(out_spec, batch, PROBE_TIME)
        if tuple(out.shape) != want:
            raise ExportError(
                f"output {out_spec.name!r} has shape {list(out.shape)} at batch={batch} T={PROBE_TIME}, "
                f"expected {list(want)}: an axis was specialized during export"
            )
