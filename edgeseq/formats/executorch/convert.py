"""ExecuTorch export: spec -> one .pte whose methods the runner chains (split.py), every method XNNPACK-delegated.

The model is traced once with the TFLite path's rewrites (LoopGRU keeps T symbolic), cut at each GRU recurrence,
and lowered as one multi-method program: `piece_<n>` methods with a dynamic T up to max_time, `gru_<n>` methods of
K unrolled steps (and `gru_<n>_tail` of fewer, for what is left under K). The plan (which method takes which value)
and edgeseq's metadata travel in the program itself, as the constant method `edgeseq_metadata` (a uint8 JSON
tensor): no sidecar to lose. The fresh file is run at T=1 and another T before it is written."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from ..._lazy import require
from ..._quiet import python_chatter_quiet
from ..._version import __version__
from ...artifact import Artifact, artifact_for, atomic_path
from ...enums import Format, Precision
from ...errors import ExportError, InputError, UnsupportedError
from .options import CONV_FORMS, EXTRA, METADATA_METHOD, PLAN_KEY, PRECISIONS, ExecutorchOptions

_EXPORT_TIME, _PROBE_TIME = 37, 50
CALIBRATION_SAMPLES, CALIBRATION_TIME = 8, 200  # int8-static: the model's calibration inputs, as TFLite takes them


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def _why(exc: BaseException) -> str:
    text = str(exc)
    if "specialized" in text or "Constraints violated" in text:
        return "torch.export specialized the time axis (" + text.strip().splitlines()[0][:200] + ")"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


def export(spec, out_path: str | Path, *, precision=Precision.FP32, options: ExecutorchOptions | None = None,
           weights=None) -> Artifact:
    """spec -> .pte (dynamic T up to max_time, batch row by row), stamped, probed; written atomically."""
    import torch

    options = options or ExecutorchOptions()
    precision = Precision.parse(precision)
    if precision not in PRECISIONS:
        have = ", ".join(p.value for p in PRECISIONS)
        raise UnsupportedError(f"ExecuTorch export at {precision.value} is not available (it has: {have})")
    if options.max_time < 2 or (options.chunk is not None and options.chunk < 1) \
            or (options.tail is not None and options.tail < 1):
        raise InputError("max_time must be >= 2, and chunk and tail >= 1, for an ExecuTorch export")
    if options.convs is not None and options.convs not in CONV_FORMS:
        raise InputError(f"convs must be one of {', '.join(CONV_FORMS)}, not {options.convs!r}")
    if options.convs == "im2col" and precision is Precision.INT8_STATIC:  # XNNPACK refuses its quantized pad
        raise InputError("int8-static writes the convolutions direct (XNNPACK refuses a quantized im2col's pad); "
                         "leave convs unset")
    require("executorch.exir", EXTRA, quiet=True)
    from ...models.weights import state_dict_sha256
    from ..tflite.rewrites import contains, masked_packing
    from .precision import add_census, conv_weights, int8_static, lower_precision
    from .rewrites import Im2colConv, rewrite_for_export
    from .split import Piece, ScanChunk, _ExportFailed, split_program

    module = spec.build(weights)
    weights_sha = state_dict_sha256(module)
    if contains(module, (torch.nn.LSTM, torch.nn.RNN)) and spec.has_dynamic_time:
        raise UnsupportedError(f"{spec.name}: LSTM / RNN layers would fix the time axis in ExecuTorch; only nn.GRU "
                               "is cut into recurrence methods")
    conv_form = options.conv_form(precision)
    loop_module, n_grus = rewrite_for_export(module, gemm_convs=conv_form == "im2col")
    n_im2col = sum(isinstance(m, Im2colConv) for m in loop_module.modules())
    dynamic = spec.has_dynamic_time
    t_a, t_b = (_EXPORT_TIME, _PROBE_TIME) if dynamic else (None, None)
    args = _args(spec, t_a)
    probe_args = _args(spec, t_b)
    time_dim = torch.export.Dim("time", min=1, max=options.max_time)
    dynamic_shapes = tuple({i: time_dim for i, d in enumerate(t.shape) if d == "time"} or None for t in spec.inputs)
    time_axis = next((i for i, d in enumerate(spec.inputs[0].shape) if d == "time"), None)
    started = time.perf_counter()
    try:
        with _quiet():
            with masked_packing(loop_module):  # pack_padded_sequence as a padded batch + lengths (TFLite's way)
                steps, inputs, outputs = split_program(loop_module, args, dynamic_shapes if dynamic else None,
                                                       probe_args,
                                                       lambda a: a[0].shape[time_axis] if time_axis is not None else 0)
            _refuse_packed(steps, spec)
            programs, plan, weighted, static_pieces = {}, [], {"int8": {}, "float": {}}, {}
            for step in steps:
                if isinstance(step, Piece):
                    shapes = tuple({ax: time_dim} if ax is not None and dynamic else None for ax in step.time_axes)
                    program = torch.export.export(step.module, step.examples, dynamic_shapes=shapes, strict=False)
                    if precision is Precision.INT8_STATIC:  # quantized below, once the whole plan can calibrate
                        programs[step.name], census = program, {}
                        static_pieces[step.name] = (step.examples, shapes)
                    else:
                        programs[step.name], census = lower_precision(program, step.examples, shapes, precision)
                    add_census(weighted, census)
                    plan.append({"kind": "method", "method": step.name, "inputs": step.inputs,
                                 "outputs": step.outputs, "time_axes": step.time_axes})
                else:
                    d, h, chunk = step.directions, step.hidden, options.chunk_for(step.hidden)
                    tail = options.tail if options.tail and options.tail < chunk else None
                    for name, k in ((step.name, chunk), (f"{step.name}_tail", tail)):
                        if k:
                            example = (torch.zeros(k, d, 1, 3 * h), torch.zeros(d, 1, h))
                            programs[name] = torch.export.export(ScanChunk(step.w_hh, step.b_hh, k), example,
                                                                 strict=False)
                    plan.append({"kind": "scan", "method": step.name, "gi": step.gi, "h0": step.h0,
                                 "output": step.output, "steps": chunk, "directions": d, "hidden": h,
                                 "layout": step.layout, "lengths": step.lengths,
                                 **({"tail": f"{step.name}_tail", "tail_steps": tail} if tail else {})})
    except (ExportError, UnsupportedError):
        raise
    except _ExportFailed as exc:
        why = _explain(exc.original, loop_module, args, dynamic_shapes, spec)
        raise ExportError(f"torch.export failed for {spec.name}: {why}") from None
    except Exception as exc:
        raise ExportError(f"cutting {spec.name} at its GRUs failed: {_why(exc)}") from None
    meta = {
        "edgeseq.version": __version__,
        "edgeseq.model": spec.name,
        "edgeseq.weights_sha256": weights_sha,
        "edgeseq.precision": precision.value,
        "edgeseq.exporter": f"executorch {_version('executorch')}",
        "edgeseq.dynamic_axes": json.dumps(spec.dynamic_axes, sort_keys=True),
        "edgeseq.inputs": json.dumps([t.to_dict() for t in spec.inputs]),
        "edgeseq.outputs": json.dumps([t.to_dict() for t in spec.outputs]),
        "edgeseq.max_time": str(options.max_time),
        PLAN_KEY: json.dumps({"steps": plan, "inputs": inputs, "outputs": outputs}),
        **({"edgeseq.source": spec.source} if spec.source else {}),
    }
    if precision is Precision.INT8_STATIC:
        feeds = spec.calibration_inputs(n=CALIBRATION_SAMPLES,
                                        time=min(CALIBRATION_TIME, options.max_time) if dynamic else None)
        try:
            with _quiet():
                programs, weighted = int8_static(programs, static_pieces, meta, feeds, conv_weights(loop_module))
        except Exception as exc:
            raise ExportError(f"calibrating {spec.name}'s int8-static methods failed: {_why(exc)}") from None
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        content, census = _lower(programs, meta, spec, options.max_time)
        tmp.write_bytes(content)
        _probe(tmp, spec, options)
    elapsed = time.perf_counter() - started
    scans = [s for s in plan if s["kind"] == "scan"]
    n_scans = len(scans)
    portable = ", ".join(f"{k} x{v}" for k, v in sorted(census["portable"].items())) or "none"
    ks = "/".join(sorted({str(s["steps"]) for s in scans})) or "no"
    tails = sorted({str(s["tail_steps"]) for s in scans if s.get("tail")})
    tail = f" (and {'/'.join(tails)} for what is left under that)" if tails else ""
    notes = [(f"{n_grus} nn.GRU -> {n_scans} recurrence method(s) of {ks} unrolled steps{tail}; "
              f"{len(plan) - n_scans} method(s) with T dynamic up to {options.max_time}; batch runs row by row"),
             (f"XNNPACK runs {census['delegated']} delegate call(s) over all methods; left on portable kernels: "
              f"{portable}")]
    if precision is not Precision.FP32:
        notes.append(_precision_note(precision, weighted, n_scans))
    if n_im2col:
        notes.append(f"{n_im2col} convolution(s) written as im2col GEMMs (one Linear over k shifted copies of the "
                     "input; options.CONV_FORMS)")
    return artifact_for(out_path, Format.EXECUTORCH, precision, spec, weights_sha256=weights_sha,
                        exporter=meta["edgeseq.exporter"] + " + xnnpack", export_seconds=round(elapsed, 3),
                        notes=tuple(notes), quantization=_quantization(precision, weighted, n_scans))


def _quantization(precision: Precision, weighted: dict, n_scans: int) -> dict | None:
    """The report's census of a quantized .pte: which weighted ops are int8 and which stayed float (every
    recurrence method does)."""
    if precision is Precision.FP32:
        return None
    how = {Precision.FP16: "the dynamic-T methods in half precision",
           Precision.INT8_DYNAMIC: "XNNPACKQuantizer (PT2E), dynamic activations, per-channel weights, every linear",
           Precision.INT8_STATIC: "XNNPACKQuantizer (PT2E), static activations, per-channel weights, convolutions "
                                  f"only; calibrated on {CALIBRATION_SAMPLES} inputs of T={CALIBRATION_TIME}"}
    recurrence = {"gru recurrence method": n_scans} if n_scans else {}
    return {"config": {"recipe": precision.value, "how": how[precision], "tool": f"executorch {_version('executorch')}"},
            "int8_ops": dict(weighted["int8"]), "float_ops": {**weighted["float"], **recurrence}}


def _precision_note(precision: Precision, weighted: dict, n_scans: int) -> str:
    """Which ops run below fp32 and which stayed float (the recurrence methods always do)."""
    recurrence = f"the {n_scans} recurrence method(s) (the GRUs' hidden-state matmuls) stay fp32"
    if precision is Precision.FP16:
        return f"fp16: every dynamic-T method computes in half precision (fp32 in and out); {recurrence}"
    total = {op: weighted["int8"].get(op, 0) + weighted["float"].get(op, 0)
             for op in {*weighted["int8"], *weighted["float"]}}
    each = ", ".join(f"{op} {weighted['int8'].get(op, 0)}/{n}" for op, n in sorted(total.items()))
    left = " (the rest float)" if weighted["float"] else ""
    return (f"{precision.value}: {sum(weighted['int8'].values())} of {sum(total.values())} weighted ops in int8{left}: "
            f"{each}; {recurrence}")


def _refuse_packed(steps, spec) -> None:
    """A packed GRU becomes `gru_seq_len` (rewrites.py), which the runner serves; what is left of the TFLite way
    (LoopGRU's scan-order op, its length-mask op: pad_packed_sequence with a padding_value) has no ExecuTorch
    kernel."""
    from .split import Piece

    for step in steps:
        if (step.layout != "seq") if not isinstance(step, Piece) else \
                any("length_mask" in str(n.target) for n in step.module.graph.nodes):
            raise UnsupportedError(f"{spec.name}: this packed-sequence form (pad_packed_sequence with a "
                                   "padding_value) is not supported by the ExecuTorch export; use -f tflite / onnx")


def _args(spec, t) -> tuple:
    import torch

    feed = spec.example_inputs(batch=1, time=t, source="random")
    return tuple(torch.from_numpy(feed[name]) for name in spec.input_names)


def _explain(exc, module, args, dynamic_shapes, spec) -> str:
    why = _why(exc)
    if why.startswith("torch.export specialized"):
        from ..export_guards import explain_specialization

        where = explain_specialization(module, args, dynamic_shapes, spec)
        if where:
            why = (f"{where}: keep the axis symbolic there (tensor ops on it, no Python branch or number made from "
                   "its size), or declare that axis static")
    return why


def _lower(programs: dict, meta: dict, spec, max_time: int) -> tuple[bytes, dict]:
    """Lower every method with the XNNPACK partitioner into one program; (the .pte bytes, the op census)."""
    import numpy as np
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    blob = torch.from_numpy(np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8).copy())
    try:
        with _quiet():
            edge = to_edge_transform_and_lower(programs, partitioner=[XnnpackPartitioner()],
                                               constant_methods={METADATA_METHOD: blob})
            _widen(edge, list(programs), max_time)
            census = _census(edge, list(programs))
            _refuse_missing_kernels(census, spec)
            content = bytes(edge.to_executorch().buffer)
    except UnsupportedError:
        raise
    except Exception as exc:
        raise ExportError(f"ExecuTorch failed to lower {spec.name}: {_why(exc)}") from None
    return content, census


def _widen(edge, names, max_time: int) -> None:
    """Give T its declared upper bound back before memory planning. ExecuTorch 1.5's edge passes narrow it on some
    graphs (cbhg-lite's highway: [1, 2048] became [1, 40], the trace's hint rounded up), and memory is planned for
    that bound; every method still computes at any T (parity at T=1 and the max, tests/test_executorch.py)."""
    import torch
    from torch.utils._sympy.value_ranges import ValueRanges

    for name in names:
        for node in edge.exported_program(name).graph.nodes:
            val = node.meta.get("val")
            for v in val if isinstance(val, (list, tuple)) else [val]:
                for size in getattr(v, "shape", ()) if isinstance(v, torch.Tensor) else ():
                    if not isinstance(size, torch.SymInt):
                        continue
                    env = size.node.shape_env
                    for sym in size.node.expr.free_symbols:
                        have = env.var_to_range.get(sym)
                        if have is not None and have.upper != max_time:
                            env.var_to_range[sym] = ValueRanges(have.lower, max_time)


def _census(edge, names) -> dict:
    """How many delegate calls XNNPACK got, and which ops stayed on ExecuTorch's portable kernels, per method."""
    delegated, portable, aten = 0, {}, set()
    for name in names:
        for node in edge.exported_program(name).graph.nodes:
            if node.op != "call_function":
                continue
            target = str(getattr(node.target, "__name__", node.target))
            if "executorch_call_delegate" in target:
                delegated += 1
            elif target not in ("getitem", "sym_size.int", "aten.sym_size.int"):
                op = target.replace("aten.", "").split(".")[0]
                key = f"{name}:{op}"
                portable[key] = portable.get(key, 0) + 1
                if target.startswith("aten."):
                    aten.add(key)
    return {"delegated": delegated, "portable": portable, "aten": aten}


def _refuse_missing_kernels(census: dict, spec) -> None:
    """An op left on portable kernels that this ExecuTorch runtime has no kernel for would fail only at load
    ("error 0x14"); name it at export instead (ESPnet's sort by length, for one)."""
    try:
        from executorch.extension.pybindings import portable_lib

        have = {n.split(".")[0] for n in portable_lib._get_operator_names()}
    except (ImportError, AttributeError):
        return
    missing = sorted(key for key in census["aten"] if f"aten::{key.split(':')[1]}" not in have)
    if missing:
        where = ", ".join(f"{k.split(':')[1]} (in {k.split(':')[0]})" for k in missing)
        raise UnsupportedError(f"{spec.name}: ExecuTorch's runtime has no kernel for {where}; rewrite that step "
                               "without it, or use -f onnx / tflite")


def _quiet():
    return python_chatter_quiet({n: logging.ERROR for n in ("torch._export", "torch.export", "executorch",
                                                            "torch.fx.experimental.symbolic_shapes")})


def _probe(path: Path, spec, options: ExecutorchOptions) -> None:
    """Run the fresh file at T=1 and another T: a specialized axis or a broken plan fails here, at export."""
    from .runner import ExecutorchRunner

    times = (min(_PROBE_TIME, options.max_time), 1) if spec.has_dynamic_time else (None,)
    runner = ExecutorchRunner(path, threads=1)
    try:
        for t in times:
            feed = spec.example_inputs(batch=1, time=t, source="random")
            try:
                outs = runner.infer(feed)
            except Exception as exc:
                raise ExportError(f"the exported .pte does not run at T={t}: {str(exc).splitlines()[0][:200]}") \
                    from None
            for out_spec in spec.outputs:
                want = spec.shape_for(out_spec, 1, t or spec.default_time)
                got = tuple(outs[out_spec.name].shape)
                if got != want:
                    raise ExportError(f"output {out_spec.name!r} has shape {list(got)} at T={t}, expected "
                                      f"{list(want)}: an axis was specialized during export")
    finally:
        runner.close()
