"""TensorRT export: the TensorRT-ready ONNX, its preflight and build plan, and the engine where it can be built."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

from ..._lazy import require
from ..._version import __version__
from ...artifact import Artifact, atomic_path, sha256_file, write_text_atomic
from ...enums import Format, Precision
from ...errors import ArtifactError, ExportError, UnsupportedError
from . import build
from .build import build_engine, make_plan
from .options import (
    EXTRA,
    NO_ENGINE,
    SIDECAR_SCHEMA,
    TIMING_CACHE_NAME,
    EngineBuild,
    ShapeRange,
    TensorRTOptions,
    companion_paths,
    quant_defaults,
    validate_precision,
)
from .preflight import _ONNX_FLOAT16, preflight
from .shape_profiles import resolve_shape_profile


def export(spec, out_path: str | Path, *, precision=Precision.FP32, options: TensorRTOptions | None = None,
           weights=None) -> Artifact:
    """spec -> TensorRT-ready ONNX + build plan (+ engine and sidecar where TensorRT and a GPU are here).

    Without an engine, the Artifact points at the ONNX and its first note says that no engine was built here and
    gives the trtexec command; with one, it points at the engine. Files of a failed export are removed.
    """
    options = options or TensorRTOptions()
    precision = Precision.parse(precision)
    validate_precision(precision, options)
    out_path = Path(out_path)
    profile = resolve_shape_profile(spec, options.shapes)
    buildable, why_not = build.can_build()
    if options.engine is EngineBuild.ALWAYS and not buildable:
        require("tensorrt", EXTRA)  # MissingExtraError naming the pip command, when that is what is missing
        raise UnsupportedError(f"cannot build a TensorRT engine here: {why_not}")
    if options.engine is EngineBuild.NEVER:
        buildable, why_not = False, "EngineBuild.NEVER was asked for"
    paths = companion_paths(out_path)
    fresh = [p for p in (*paths.values(), out_path) if not p.exists()]
    try:
        return _export(spec, out_path, paths, precision, options, weights, profile, buildable, why_not)
    except BaseException:
        for path in fresh:  # what this call created; files from an earlier export stay
            _remove(path)
        raise


def _export(spec, out_path: Path, paths: dict[str, Path], precision: Precision, options: TensorRTOptions, weights,
            profile: dict[str, ShapeRange], build: bool, why_not: str) -> Artifact:
    from .. import onnx as onnx_format

    started = time.perf_counter()
    # 1. the ONNX that TensorRT will parse: exported here, or a given one (e.g. Q/DQ int8) copied beside the plan
    if options.onnx_path:
        source = Path(options.onnx_path)
        if not source.is_file():
            raise ArtifactError(f"onnx_path {str(source)!r} does not exist or is not a file")
        with atomic_path(paths["onnx"]) as tmp:
            shutil.copyfile(source, tmp)
        weights_sha = _onnx_metadata(paths["onnx"]).get("edgeseq.weights_sha256", "")
        opset = _onnx_opset(paths["onnx"])
    else:
        onnx_precision = Precision.INT8_STATIC if precision is Precision.INT8_STATIC else Precision.FP32
        onnx_options = options.onnx or onnx_format.OnnxOptions()
        if onnx_precision is Precision.INT8_STATIC and onnx_options.quant is None:
            from ...quantize import Approach

            onnx_options = dataclasses.replace(onnx_options, quant=quant_defaults()[Approach.INT8_STATIC])
        onnx_art = onnx_format.export(spec, paths["onnx"], precision=onnx_precision, options=onnx_options,
                                      weights=weights)
        weights_sha, opset = onnx_art.weights_sha256, onnx_art.opset

    # 2. preflight: every node the parser would reject is named now, not after a build on the target
    report = preflight(paths["onnx"])
    if not report.ok:
        raise ExportError(f"{spec.name}: {report.summary()}")
    if precision is Precision.INT8_STATIC and not report.quantized:
        raise ExportError(f"{spec.name}: an int8 TensorRT build needs an ONNX with QuantizeLinear/DequantizeLinear "
                          "nodes (explicit quantization); this one has none")

    # 3. the plan, always written: it records how the engine was built, or is to be built on the target
    cache = Path(options.timing_cache) if options.timing_cache else out_path.parent / TIMING_CACHE_NAME
    cache_ref = cache.name if cache.parent == out_path.parent else str(cache)
    plan = make_plan(spec.name, precision, paths["onnx"].name, out_path.name, profile,
                     fp16_onnx=is_fp16_onnx(paths["onnx"]), timing_cache=cache_ref,
                     workspace_mib=options.workspace_mib)
    onnx_sha = sha256_file(paths["onnx"])
    plan_dict = {**plan.to_dict(), "onnx_sha256": onnx_sha, "weights_sha256": weights_sha,
                 "preflight": report.to_dict(), "engine_built": build, "why_no_engine": None if build else why_not}
    notes = [f"preflight: {report.summary()}", *(f"preflight warning: {w}" for w in report.warnings)]
    common = dict(format=Format.TENSORRT.value, precision=precision.value, model=spec.name, opset=opset,
                  weights_sha256=weights_sha, inputs=tuple(t.to_dict() for t in spec.inputs),
                  outputs=tuple(t.to_dict() for t in spec.outputs))

    if not build:
        write_text_atomic(paths["plan"], json.dumps(plan_dict, indent=2) + "\n")
        notes.insert(0, f"{NO_ENGINE} ({why_not}): wrote {paths['onnx'].name} and {paths['plan'].name}; build the "
                        f"engine on the target with: {plan.trtexec_command()}")
        return Artifact(path=str(paths["onnx"]), sha256=onnx_sha, size_bytes=paths["onnx"].stat().st_size,
                        exporter="edgeseq tensorrt plan (ONNX + trtexec command; no engine built)",
                        export_seconds=round(time.perf_counter() - started, 3), notes=tuple(notes), **common)

    # 4. the engine, its sidecar and the updated timing cache
    built = build_engine(paths["onnx"], out_path, plan, timing_cache=cache)
    sidecar = {
        "schema": SIDECAR_SCHEMA,
        **built,
        "precision": precision.value,
        "profile": {n: r.to_dict() for n, r in profile.items()},
        "model": spec.name,
        "weights_sha256": weights_sha,
        "onnx_sha256": onnx_sha,
        "engine_sha256": sha256_file(out_path),
        "edgeseq_version": __version__,
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "inputs": [t.to_dict() for t in spec.inputs],
        "outputs": [t.to_dict() for t in spec.outputs],
    }
    write_text_atomic(paths["sidecar"], json.dumps(sidecar, indent=2) + "\n")
    write_text_atomic(paths["plan"], json.dumps(plan_dict, indent=2) + "\n")
    sm = built["compute_capability"].replace(".", "")
    return Artifact(path=str(out_path), sha256=sidecar["engine_sha256"], size_bytes=out_path.stat().st_size,
                    exporter=f"TensorRT {built['tensorrt_version']} builder ({built['gpu_name']}, sm_{sm})",
                    export_seconds=round(time.perf_counter() - started, 3), parent=onnx_sha,
                    notes=(f"sidecar {paths['sidecar'].name}; built from {paths['onnx'].name}", *notes), **common)


def _remove(path: Path) -> None:
    if path.exists():
        path.unlink()


def _onnx_metadata(path: Path) -> dict[str, str]:
    from ..onnx import read_metadata

    return read_metadata(path)


def _onnx_opset(path: Path) -> int | None:
    onnx = require("onnx", "onnx")
    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def is_fp16_onnx(path: Path) -> bool:
    """True when the model's float weights are fp16 (it was converted to fp16 before the build)."""
    onnx = require("onnx", "onnx")
    model = onnx.load(str(path), load_external_data=False)
    floats = [i.data_type for i in model.graph.initializer if i.data_type in (1, _ONNX_FLOAT16)]
    return bool(floats) and floats.count(_ONNX_FLOAT16) > floats.count(1)
