"""TFLite export with litert-torch (no TensorFlow) and quantization with ai-edge-quantizer.

The time axis stays dynamic: every nn.GRU is swapped for `LoopGRU` (rewrites.py), whose recurrence is one custom op
that litert-torch lowers to a TFLite WHILE loop (litert_loop.py). One .tflite then runs every T from 1 to
`max_time` and every batch, exactly (no padding, no buckets), converts in seconds instead of minutes (no unrolled
graph), and stays small. A T above `max_time` is refused with one line, never cropped or padded.

Like the ONNX exporter, the fresh file is run once at another batch and T before it is written; a specialized
axis is an ExportError at export time."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path

from ..._lazy import require
from ..._quiet import python_chatter_quiet
from ..._version import __version__
from ...artifact import Artifact, artifact_for, atomic_path
from ...enums import Format, Precision
from ...errors import ExportError, InputError, UnsupportedError
from .metadata import read_metadata_bytes, stamp
from .options import (
    _INT8_STATIC_SCOPES,
    _LOOP_SCOPE,
    _QUANT_NOTES,
    _SIGNATURE,
    EXTRA,
    TfliteOptions,
    _version,
    _why,
    validate_precision,
)
from .runner import TfliteRunner, _interpreter_class

PROBE_BATCH, PROBE_TIME = 3, 50
_EXPORT_BATCH, _EXPORT_TIME = 2, 37


# ---- export ---------------------------------------------------------------------------------------------------------


def export(spec, out_path: str | Path, *, precision=Precision.FP32, options: TfliteOptions | None = None,
           weights=None) -> Artifact:
    """spec -> .tflite with dynamic batch/time (GRU as a WHILE loop), optionally quantized, stamped; atomic."""
    import torch

    options = options or TfliteOptions()
    precision = Precision.parse(precision)
    validate_precision(precision)
    litert_torch = require("litert_torch", EXTRA, quiet=True)
    if precision is not Precision.FP32:
        require("ai_edge_quantizer", EXTRA, quiet=True)
    if options.max_time < 1 or options.max_batch < 1:
        raise InputError("max_time and max_batch must be >= 1")
    from ...models.weights import state_dict_sha256
    from . import litert_loop as _litert_loop
    from .rewrites import contains, masked_packing, rewrite_for_export

    module = spec.build(weights)
    weights_sha = state_dict_sha256(module)
    unsupported = contains(module, (torch.nn.LSTM, torch.nn.RNN))
    if unsupported and spec.has_dynamic_time:
        raise UnsupportedError(f"{spec.name}: LSTM / RNN layers ({', '.join(unsupported)}) would fix the time axis in "
                               "TFLite; only nn.GRU is lowered to a loop")
    loop_module, n_grus = rewrite_for_export(module)
    dynamic_batch = "batch" in spec.inputs[0].shape
    batch = _EXPORT_BATCH if dynamic_batch else None
    feed = spec.example_inputs(batch=batch or 1, time=_EXPORT_TIME if spec.has_dynamic_time else None,
                               source="random")
    args = tuple(torch.from_numpy(feed[name]) for name in spec.input_names)
    dims = {"batch": torch.export.Dim("batch", min=1, max=options.max_batch),
            "time": torch.export.Dim("time", min=1, max=options.max_time)}
    dynamic_shapes = tuple({i: dims[d] for i, d in enumerate(t.shape) if d in dims} or None for t in spec.inputs)
    out_path = Path(out_path)
    started = time.perf_counter()
    with atomic_path(out_path) as tmp:
        _litert_loop.register_lowering()
        with masked_packing(loop_module):
            content, n_loops = _convert(litert_torch, _litert_loop, loop_module, args, dynamic_shapes, spec)
        float_seconds = time.perf_counter() - started
        bound = f", T <= {options.max_time}" if spec.has_dynamic_time else ""
        notes = [f"{n_grus} nn.GRU -> {n_loops} TFLite WHILE loop(s); dynamic axes "
                 f"{sorted({d for t in spec.inputs for d in t.shape if isinstance(d, str)})}{bound}"]
        meta = {
            "version": __version__,
            "model": spec.name,
            "weights_sha256": weights_sha,
            "precision": precision.value,
            "exporter": f"litert-torch {_version('litert-torch')}",
            "dynamic_axes": json.dumps(spec.dynamic_axes, sort_keys=True),
            "inputs": json.dumps([t.to_dict() for t in spec.inputs]),
            "outputs": json.dumps([t.to_dict() for t in spec.outputs]),
            "max_time": str(options.max_time),
            "max_batch": str(options.max_batch),
            **({"source": spec.source} if spec.source else {}),
        }
        # stamp first: the quantizer writes large constants by offset, which a flatbuffer re-pack would drop;
        # it carries the metadata table over
        content = stamp(content, meta)
        if precision is not Precision.FP32:
            content = _quantize(content, precision, spec, options)
            notes.append(_QUANT_NOTES[precision])
            if read_metadata_bytes(content).get("edgeseq.precision") != precision.value:
                raise ExportError("ai-edge-quantizer dropped or changed the edgeseq metadata of the model")
        tmp.write_bytes(content)
        _probe(tmp, spec, options)
    elapsed = time.perf_counter() - started
    notes.append(f"float conversion {float_seconds:.1f} s")
    quantization = None
    if precision is not Precision.FP32:
        quantization = {"config": {"recipe": precision.value, "tool": f"ai-edge-quantizer {_version('ai-edge-quantizer')}"},
                        **op_census(out_path.read_bytes())}
    return artifact_for(
        out_path, Format.TFLITE, precision, spec,
        weights_sha256=weights_sha,
        exporter=meta["exporter"] + (" + ai-edge-quantizer" if precision is not Precision.FP32 else ""),
        export_seconds=round(elapsed, 3),
        notes=tuple(notes),
        quantization=quantization,
    )


_BOOKKEEPING = {"QUANTIZE", "DEQUANTIZE", "WHILE", "SHAPE"}
_FLOAT_TYPES, _INT8_TYPES = {0, 1}, {9, 3, 7}  # schema TensorType: FLOAT32, FLOAT16 / INT8, UINT8, INT16


def op_census(content: bytes) -> dict[str, dict[str, int]]:
    """Which TFLite ops compute in int8 and which stay float, over every subgraph (the WHILE bodies included), in the
    same form as the ONNX census. An op with int8 activations counts as int8; a float op with an int8 constant weight
    (dynamic range) too, since the kernel quantizes its input on the fly; a float op whose weight is an fp16 constant
    dequantized at load is weight-only (it computes in fp32). Shape arithmetic (int32) and Q/DQ are left out."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    census: dict[str, dict[str, int]] = {"int8_ops": {}, "fp16_ops": {}, "float_ops": {}, "weight_only_ops": {}}
    for sg in model.subgraphs:
        produced_by = {}
        for op in sg.operators:
            code = model.operatorCodes[op.opcodeIndex]
            name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
            for out in op.outputs if op.outputs is not None else []:
                produced_by[out] = (name, op)
        for op in sg.operators:
            code = model.operatorCodes[op.opcodeIndex]
            name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
            if name in _BOOKKEEPING:
                continue
            inputs = [sg.tensors[i] for i in (op.inputs if op.inputs is not None else []) if i >= 0]
            types = {t.type for t in inputs}
            constant = [i for i in (op.inputs if op.inputs is not None else []) if i >= 0 and
                        (model.buffers[sg.tensors[i].buffer].data is not None or
                         (model.buffers[sg.tensors[i].buffer].size or 0) > 0)]
            if not types & (_FLOAT_TYPES | _INT8_TYPES):
                continue  # int32 / bool shape arithmetic
            fp16_weight = any(produced_by.get(i, ("", None))[0] == "DEQUANTIZE" and
                              sg.tensors[produced_by[i][1].inputs[0]].type == 1 for i in op.inputs if i >= 0)
            if types & _INT8_TYPES:
                kind = "int8_ops"
            elif fp16_weight:
                kind = "weight_only_ops"
            elif constant and any(sg.tensors[i].type in _INT8_TYPES for i in constant):
                kind = "int8_ops"
            else:
                kind = "float_ops"
            census[kind][name] = census[kind].get(name, 0) + 1
    return census


@contextlib.contextmanager
def _quiet():
    """litert-torch prints progress bars and absl lines; keep the CLI's stdout clean."""
    old_env = os.environ.get("LITERT_TORCH_FULL_TFL_DECOMPS")
    # The full aten -> tfl decomposition table keeps reshapes / views with a dynamic T as TFLite ops (the default
    # lowering of aten.view through JAX rejects dynamic sizes).
    os.environ["LITERT_TORCH_FULL_TFL_DECOMPS"] = "1"
    try:
        with python_chatter_quiet({n: logging.ERROR for n in ("absl", "litert_torch", "torch._export",
                                                                 "torch.export")}):
            yield
    finally:
        if old_env is None:
            os.environ.pop("LITERT_TORCH_FULL_TFL_DECOMPS", None)
        else:
            os.environ["LITERT_TORCH_FULL_TFL_DECOMPS"] = old_env


def _convert(litert_torch, loop_lib, module, args, dynamic_shapes, spec) -> tuple[bytes, int]:
    try:
        with _quiet():
            edge = litert_torch.convert(module, args, dynamic_shapes=dynamic_shapes)
            exporter = getattr(edge, "_exporter", None)
            mlir_module = getattr(exporter, "module", None)
            if mlir_module is None:
                raise ExportError("this litert-torch version does not expose the converted MLIR module "
                                  f"(tested with 0.10); installed: {_version('litert-torch')}")
            with mlir_module.context:
                n_loops = loop_lib.outline_whiles(mlir_module)
            content = bytes(exporter.to_bytes())
    except ExportError:
        raise
    except Exception as exc:
        why = _why(exc)
        if why.startswith("torch.export specialized"):
            from ..export_guards import explain_specialization

            where = explain_specialization(module, args, dynamic_shapes, spec)
            if where:
                why = (f"{where}: keep the axis symbolic there (tensor ops on it, no Python branch or number made "
                       "from its size), or declare that axis static")
        raise ExportError(f"litert-torch failed to convert {spec.name}: {why}") from None
    return content, n_loops


def _recipe(precision: Precision):
    from ai_edge_quantizer import algorithm_manager, qtyping, recipe, recipe_manager

    if precision in (Precision.FP16, Precision.INT8_DYNAMIC):
        manager = recipe_manager.RecipeManager()
        if precision is Precision.FP16:
            manager.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                           num_bits=16, algorithm_key=algorithm_manager.AlgorithmName.FLOAT_CASTING)
        else:
            manager.load_quantization_recipe(recipe.dynamic_wi8_afp32())
        # the recurrent matmul (a BATCH_MATMUL with constant weights inside the WHILE body) stays fp32: LiteRT's
        # hybrid BATCH_MATMUL fails to allocate inside the loop, and dequantizing per step would cost more than
        # the small matmul saves
        manager.add_quantization_config(regex=_LOOP_SCOPE, operation_name=qtyping.TFLOperationName.BATCH_MATMUL,
                                        algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE)
        return manager.get_quantization_recipe()
    # Static int8 on the convolution front end only; the rest stays float. bench/bench_tflite_int8.py quantizes one
    # group of ops at a time: the conv bank, pool and projections cost 0.2-1.9e-3 each (diluted by the residual's
    # float input), the residual add, the linear before the highway, the highway and the output's int8 round trip
    # 1e-2 to 2.3e-2 each; all of them in int8 gave 2.1e-2 (cbhg-lite) / 3.0e-2 (cbhg), over the 1.5e-2 gate; this
    # recipe 9.0e-4 / 2.2e-3, cbhg at 0.56x fp32 latency (bench/results/tflite-int8-static.json). int16 activations
    # pass too but XNNPACK has no int16 kernels (18-25x slower). The recurrence stays float in every mode: an int8 hidden state re-quantized at each
    # step compounds over T, and the loop's subgraph inputs get no calibration statistics.
    manager = recipe_manager.RecipeManager()
    manager.add_static_config(regex=_INT8_STATIC_SCOPES, operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                              activation_num_bits=8, weight_num_bits=8,
                              weight_granularity=qtyping.QuantGranularity.CHANNELWISE,
                              algorithm_key=algorithm_manager.AlgorithmName.MIN_MAX_UNIFORM_QUANT)
    for boundary in (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT):  # float in, float out
        manager.add_quantization_config(regex=".*", operation_name=boundary,
                                        algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE)
    return manager.get_quantization_recipe()


def calibration_data(spec, options: TfliteOptions, input_names: list[str]) -> dict:
    """The spec's calibration inputs (real speech where the model takes it) keyed for the quantizer's signature."""
    samples = []
    for feed in spec.calibration_inputs(n=options.calibration_samples,
                                        time=options.calibration_time if spec.has_dynamic_time else None):
        samples.append({tf_name: feed[name] for tf_name, name in zip(input_names, spec.input_names)})
    return {_SIGNATURE: samples}


def _quantize(content: bytes, precision: Precision, spec, options: TfliteOptions, *, recipe=None,
              samples=None) -> bytes:
    """Quantize a float .tflite; `recipe` / `samples` (calibration feeds keyed by the model's input names) replace
    the defaults, for bench/bench_tflite_int8.py's comparison of options."""
    from ai_edge_quantizer import quantizer

    try:
        with _quiet():
            qt = quantizer.Quantizer(bytearray(content))
            qt.load_quantization_recipe(recipe if recipe is not None else _recipe(precision))
            calibration = None
            if qt.need_calibration:
                names = _signature_input_names(content)
                data = calibration_data(spec, options, names) if samples is None else \
                    {_SIGNATURE: [{tf: feed[name] for tf, name in zip(names, spec.input_names)} for feed in samples]}
                calibration = qt.calibrate(data, num_threads=1)
            result = qt.quantize(calibration, enable_progress_report=False)
            return bytes(result.quantized_model)
    except Exception as exc:
        raise ExportError(f"ai-edge-quantizer failed at {precision.value} for {spec.name}: {_why(exc)}") from None


def _signature_input_names(content: bytes) -> list[str]:
    interp = _interpreter_class()(model_content=content)
    return list(interp.get_signature_list()[_SIGNATURE]["inputs"])


# ---- probe ----------------------------------------------------------------------------------------------------------


def _probe(path: Path, spec, options: TfliteOptions) -> None:
    """Run the fresh file at another batch and T (and at T=1): a baked-in size fails here, at export."""
    dynamic_batch = "batch" in spec.inputs[0].shape
    batch = min(PROBE_BATCH, options.max_batch) if dynamic_batch else 1
    times = (min(PROBE_TIME, options.max_time), 1) if spec.has_dynamic_time else (None,)
    runner = TfliteRunner(path, threads=1)
    try:
        for t in times:
            feed = spec.example_inputs(batch=batch, time=t, source="random")
            try:
                outs = runner.infer(feed)
            except Exception as exc:
                raise ExportError(f"the exported .tflite does not run at batch={batch} T={t}: "
                                  f"{str(exc).splitlines()[0][:200]}") from None
            for out_spec in spec.outputs:
                want = spec.shape_for(out_spec, batch, t or spec.default_time)
                got = tuple(outs[out_spec.name].shape)
                if got != want:
                    raise ExportError(f"output {out_spec.name!r} has shape {list(got)} at batch={batch} T={t}, "
                                      f"expected {list(want)}: an axis was specialized during export")
    finally:
        runner.close()
