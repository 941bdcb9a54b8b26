"""fp16 and int8 ONNX artifacts derived from an fp32 one (onnxconverter-common, onnxruntime.quantization)."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import tempfile
import time
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from ..._lazy import require
from ..._version import __version__
from ...artifact import artifact_for, atomic_path, sha256_file
from ...enums import Format, Precision
from ...errors import ArtifactError, EdgeseqError, ExportError
from .convert import _probe_dynamic_shapes, export
from .ops import int8_safe_isas, op_census
from .options import EXTRA, OnnxOptions, _why
from .weights import hoist_gru_input_projection, store_weights_int8


def export_derived(spec, out_path: str | Path, *, precision, options: OnnxOptions = OnnxOptions(), weights=None):
    """fp16 / int8-dynamic / int8-static .onnx derived from the fp32 export; Artifact.parent is the fp32 sha256."""
    from ...quantize import Approach, QuantConfig, calibration_feeds

    onnx = require("onnx", EXTRA)
    precision = Precision.parse(precision)
    config = options.quant  # resolved by the package's export: the format's default with the user's changes
    if not isinstance(config, QuantConfig):
        raise TypeError("export_derived takes a resolved QuantConfig (formats.onnx.export resolves it)")
    out_path = Path(out_path)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeseq-quant-") as tmp:
        tmp = Path(tmp)
        if options.parent:
            parent_path = Path(options.parent)
            _check_parent(onnx, parent_path, spec)
        else:
            parent_path = tmp / "parent.fp32.onnx"
            export(spec, parent_path, precision=Precision.FP32, weights=weights,
                   options=dataclasses.replace(options, quant=None, calibration_data=None, parent=None))
        parent_sha = sha256_file(parent_path)
        parent_meta = {p.key: p.value for p in onnx.load(str(parent_path)).metadata_props}
        if config.approach is Approach.FP16:
            model = _to_fp16(onnx, parent_path)
        else:
            feeds = None
            if config.approach is Approach.INT8_STATIC:
                feeds = calibration_feeds(spec, config, options.calibration_data)
                if options.calibration_data is not None and config.calibration == "spec":
                    config = config.replace(calibration="user")
            model = _to_int8(onnx, parent_path, tmp, config, feeds)
        census = op_census(model)
        meta = {**parent_meta, "edgeseq.precision": precision.value, "edgeseq.parent_sha256": parent_sha,
                "edgeseq.quant": json.dumps(config.to_dict(), sort_keys=True)}
        if config.is_int8:
            from ...environment import int8_isa
            from ...quantize import INT8_CPUS_KEY, QUANTIZED_ON_KEY

            census["int8_cpus"] = list(int8_safe_isas(config))
            meta.update({INT8_CPUS_KEY: ",".join(census["int8_cpus"]), QUANTIZED_ON_KEY: int8_isa()})
        del model.metadata_props[:]
        for key, value in meta.items():
            model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
        model.producer_name, model.producer_version = "edgeseq", __version__
        with atomic_path(out_path) as staged:
            try:
                onnx.checker.check_model(model)
            except Exception as exc:
                raise ExportError(f"the {precision.value} model does not pass onnx.checker: {_why(exc)}") from None
            onnx.save(model, str(staged))
            _probe_load_isolated(staged, precision)
            _probe_dynamic_shapes(staged, spec)
    return artifact_for(
        out_path, Format.ONNX, precision, spec,
        opset=max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=options.opset),
        weights_sha256=parent_meta.get("edgeseq.weights_sha256", ""),
        exporter=_derived_tool(config),
        export_seconds=round(time.perf_counter() - started, 3),
        parent=parent_sha,
        quantization={"config": config.to_dict(), **census},
    )


def _probe_load_isolated(path: Path, precision) -> None:
    """Load a rewritten graph in a child process first: ONNX Runtime has crashed (segfault) on valid fp16 graphs
    while optimizing them, which would take the whole export down with no message. A crash here is an ExportError."""
    import subprocess
    import sys

    code = ("import sys, onnxruntime as ort\n"
            "o = ort.SessionOptions(); o.log_severity_level = 4\n"
            "ort.InferenceSession(sys.argv[1], sess_options=o, providers=['CPUExecutionProvider'])\n")
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise ExportError(f"onnxruntime did not load the {precision.value} model within 300 s") from None
    if proc.returncode < 0:
        raise ExportError(f"onnxruntime crashed (signal {-proc.returncode}) loading the {precision.value} model; "
                          f"this is a runtime bug, not a bad input: try another precision or --quant setting")
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise ExportError(f"onnxruntime cannot load the {precision.value} model: {last[:300]}")


def _derived_tool(config) -> str:
    from ...quantize import Approach

    if config.approach is Approach.FP16:
        return "onnxconverter-common float16 (keep_io_types)"
    fn = "quantize_static" if config.approach is Approach.INT8_STATIC else "quantize_dynamic"
    return f"onnxruntime.quantization.{fn}"


def _check_parent(onnx, path: Path, spec) -> None:
    if not path.is_file():
        raise ArtifactError(f"parent model {str(path)!r} does not exist")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError on a truncated or foreign file
        raise ArtifactError(f"parent model {str(path)!r} is not a readable ONNX model: {_why(exc)}") from None
    if not model.graph.node:
        raise ArtifactError(f"parent model {str(path)!r} holds no graph (not an ONNX model, or empty)")
    meta = {p.key: p.value for p in model.metadata_props}
    if meta.get("edgeseq.precision", "fp32") != "fp32":
        raise ExportError(f"parent model {str(path)!r} is {meta['edgeseq.precision']}; derive from an fp32 export")
    if meta.get("edgeseq.model", spec.name) != spec.name:
        raise ExportError(f"parent model {str(path)!r} is {meta['edgeseq.model']!r}, not {spec.name!r}")


def _quiet():
    """The quantization tools print progress and warnings; the artifact and its census are the record."""
    from contextlib import ExitStack

    stack = ExitStack()
    stack.enter_context(redirect_stdout(io.StringIO()))
    stack.enter_context(redirect_stderr(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    stack.callback(root.setLevel, level)
    return stack


def _to_fp16(onnx, parent_path: Path):
    """fp16 weights and activations, float32 inputs and outputs (casts at the edges).

    Workaround: ONNX Runtime 1.32's CPU session segfaults while optimizing (level ORT_ENABLE_ALL) an fp16
    Transpose that feeds an fp16 MatMul (cbhg-postnet's GRU output -> out linear). Such Transposes stay fp32 (two
    Casts around them). The graph's value_info is cleared first (the converter re-infers it): stale float32 entries
    clash with the casts it inserts (seen on the pool's Max after a Pad with a -inf constant)."""
    float16 = require("onnxconverter_common.float16", EXTRA)
    model = onnx.load(str(parent_path))
    feeds_matmul = {i for n in model.graph.node if n.op_type == "MatMul" for i in n.input}
    blocked = [n.name for n in model.graph.node if n.op_type == "Transpose" and n.output[0] in feeds_matmul]
    del model.graph.value_info[:]  # the converter re-infers types; stale float32 value_info clashes with its casts
    try:
        with _quiet():
            return float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=blocked or None)
    except Exception as exc:
        raise ExportError(f"onnxconverter-common could not convert the model to fp16: {_why(exc)}") from None


def _to_int8(onnx, parent_path: Path, tmp: Path, config, feeds):
    """quant_pre_process, then quantize_dynamic / quantize_static with the config's options, then weight-only
    storage."""
    require("onnxruntime", EXTRA)
    from onnxruntime.quantization import QuantFormat as OrtFormat
    from onnxruntime.quantization import QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ...quantize import Approach, GruExport, QuantDtype, QuantFormat

    source = parent_path
    hoisted = config.gru is GruExport.HOISTED
    if hoisted:
        source = tmp / "hoisted.onnx"
        onnx.save(hoist_gru_input_projection(onnx.load(str(parent_path))), str(source))
    pre, out = tmp / "pre.onnx", tmp / "quantized.onnx"
    qtype = {QuantDtype.INT8: QuantType.QInt8, QuantDtype.UINT8: QuantType.QUInt8}
    op_types = list(config.op_types) or None
    nodes = None
    try:
        with _quiet():
            # ORT's optimizer would fold the hoisted GRU's identity input weights into the file: skip it there.
            quant_pre_process(str(source), str(pre), skip_optimization=hoisted)
            if hoisted and op_types and "MatMul" not in op_types:  # the hoisted projection is quantized regardless
                nodes = [n.name for n in onnx.load(str(pre)).graph.node
                         if n.op_type in op_types or n.name.endswith("/hoisted/MatMul")]
                op_types = op_types + ["MatMul"]
            if config.approach is Approach.INT8_DYNAMIC:
                quantize_dynamic(str(pre), str(out), op_types_to_quantize=op_types, per_channel=config.per_channel,
                                 reduce_range=config.reduce_range, weight_type=qtype[config.weight_type],
                                 nodes_to_quantize=nodes, extra_options={"MatMulConstBOnly": True})
            else:
                cache = _calibrate(str(pre), tmp, config, feeds, op_types)
                fmt = OrtFormat.QDQ if config.quant_format is QuantFormat.QDQ else OrtFormat.QOperator
                quantize_static(str(pre), str(out), None, quant_format=fmt, op_types_to_quantize=op_types,
                                per_channel=config.per_channel, reduce_range=config.reduce_range,
                                activation_type=qtype[config.activation_type],
                                weight_type=qtype[config.weight_type], calibrate_method=_ort_method(config),
                                nodes_to_quantize=nodes, calibration_cache_path=str(cache),
                                # signed int8 activations are made symmetric (zero point 0): what TensorRT reads
                                extra_options={"MatMulConstBOnly": True,
                                               "ActivationSymmetric": config.activation_type is QuantDtype.INT8,
                                               "WeightSymmetric": True})
    except EdgeseqError:
        raise
    except Exception as exc:
        raise ExportError(f"onnxruntime.quantization failed ({config.label()}): {_why(exc)}") from None
    model = onnx.load(str(out))
    if config.weight_only:
        model = store_weights_int8(model, config.weight_only)
    return model


def _ort_method(config):
    from onnxruntime.quantization import CalibrationMethod as OrtMethod

    from ...quantize import CalibrationMethod

    return {CalibrationMethod.MINMAX: OrtMethod.MinMax, CalibrationMethod.ENTROPY: OrtMethod.Entropy,
            CalibrationMethod.PERCENTILE: OrtMethod.Percentile}[config.calibration_method]


# Histogram sizes for the entropy search: quantize_static's own entropy calibrator uses 128 bins for 128 quantized
# bins, which leaves one candidate threshold (the full range, i.e. MinMax); 2048 bins give it a real search.
_ENTROPY_OPTIONS = {"num_bins": 2048, "num_quantized_bins": 256}


def _calibrate(model_path: str, tmp: Path, config, feeds, op_types):
    """ORT's calibrator over the feeds; the ranges go to quantize_static through its calibration cache file."""
    from onnxruntime.quantization.calibrate import CalibrationDataReader, create_calibrator, save_tensors_data

    from ...quantize import CalibrationMethod

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

    extra = _ENTROPY_OPTIONS if config.calibration_method is CalibrationMethod.ENTROPY else {}
    calibrator = create_calibrator(model_path, op_types, augmented_model_path=str(tmp / "augmented.onnx"),
                                   calibrate_method=_ort_method(config), extra_options=extra)
    try:
        calibrator.collect_data(Reader())
        ranges = calibrator.compute_data()
    except Exception as exc:
        raise ExportError(f"calibration failed on the given data: {_why(exc)}") from None
    cache = tmp / "calibration.json"
    save_tensors_data(ranges, cache)
    return cache
