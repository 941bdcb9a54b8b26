"""ONNX -> .ort: the ONNX of the precision (made by the ONNX format), converted by onnxruntime's own
convert_onnx_models_to_ort, with the reduced-build operator config and the mobile usability check beside it.

Optimization style "Fixed" (the converter's advice for the CPU provider): ONNX Runtime's optimizations are applied
once, at conversion, for any CPU (the converter leaves out the x86-only NCHWc layout unless told amd64)."""

from __future__ import annotations

import io
import json
import logging
import shutil
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

from ..._lazy import require
from ...artifact import artifact_for, atomic_path, sha256_file, write_text_atomic
from ...enums import Format, Precision
from ...errors import ArtifactError, ExportError
from . import usability
from .options import CONFIG_SUFFIX, EXTRA, OrtOptions

SOURCE_KEY = "edgeseq.onnx_sha256"  # the ONNX the .ort was converted from
USABILITY_KEY = "edgeseq.mobile_usability"  # the usability check as JSON (EpUsability.to_dict per provider)


def config_path(out: str | Path) -> Path:
    return Path(str(out) + CONFIG_SUFFIX)


def export(spec, out_path: str | Path, *, precision=Precision.FP32, options: OrtOptions | None = None,
           weights=None):
    """spec -> ONNX (temporary) -> .ort at out_path and its operators config beside it, both written atomically."""
    from .. import get

    options = options or OrtOptions()
    precision = Precision.parse(precision)
    out_path = Path(out_path)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeseq-ort-") as tmp:
        tmp = Path(tmp)
        source = tmp / (out_path.name[: -len(out_path.suffix)] + ".onnx")
        onnx_options = _onnx_options(options, spec, weights, tmp)
        onnx_art = get(Format.ONNX).export(spec, source, precision=precision, options=onnx_options, weights=weights)
        source_sha = sha256_file(source)
        try:
            checked = usability.check(source)
            notes = [u.note() for u in checked]
            stamp = {USABILITY_KEY: json.dumps([u.to_dict() for u in checked], sort_keys=True)}
        except Exception as exc:  # noqa: BLE001 - the tool's internals moved: the .ort is still good, say so
            notes, stamp = [f"mobile usability: not checked ({type(exc).__name__}: {str(exc)[:120]})"], {}
        get(Format.ONNX).update_metadata(source, {SOURCE_KEY: source_sha, **stamp})
        converted, config = _convert(source, tmp / "ort")
        _probe(converted, spec)
        ops = [ln for ln in config.read_text().splitlines() if ln and not ln.startswith("#")]
        header = f"# operators of {out_path.name}, for an ONNX Runtime build with --include_ops_by_config\n"
        config_out = config_path(out_path)
        fresh = [p for p in (config_out, out_path) if not p.exists()]
        try:
            write_text_atomic(config_out, header + "\n".join(ops) + "\n")
            with atomic_path(out_path) as staged:
                shutil.copyfile(converted, staged)
        except BaseException:
            for path in fresh:
                path.unlink(missing_ok=True)
            raise
    count = sum(len(ln.split(";")[2].split(",")) for ln in ops)
    ort = require("onnxruntime", EXTRA)
    return artifact_for(
        out_path, Format.ORT, precision, spec,
        opset=onnx_art.opset, weights_sha256=onnx_art.weights_sha256, parent=source_sha,
        exporter=f"{onnx_art.exporter} -> onnxruntime {ort.__version__} convert_onnx_models_to_ort (Fixed)",
        export_seconds=round(time.perf_counter() - started, 3), quantization=onnx_art.quantization,
        notes=(*onnx_art.notes, f"operators config: {config_out.name} ({count} op types) for a reduced ORT build",
               *notes),
    )


def _onnx_options(options: OrtOptions, spec, weights, tmp: Path):
    """The ONNX options, with an fp32 .ort parent swapped for the fp32 ONNX it was converted from: made again here
    and checked to be that same file by the sha256 the .ort records."""
    import dataclasses

    from .. import get
    from .metadata import IDENTIFIER, read_metadata

    parent = options.onnx.parent
    if not parent or not Path(parent).is_file():
        return options.onnx
    with open(parent, "rb") as fh:
        if fh.read(8)[4:8] != IDENTIFIER:
            return options.onnx  # an fp32 .onnx: the ONNX format derives from it (and checks it)
    meta = read_metadata(parent)
    if meta.get("edgeseq.precision", "fp32") != "fp32":
        raise ExportError(f"parent model {parent!r} is {meta['edgeseq.precision']}; derive from an fp32 export")
    if SOURCE_KEY not in meta:
        raise ArtifactError(f"parent model {parent!r} records no source ONNX; give the fp32 .onnx as parent")
    remade = tmp / "parent.fp32.onnx"
    fp32 = dataclasses.replace(options.onnx, quant=None, calibration_data=None, parent=None)
    get(Format.ONNX).export(spec, remade, precision=Precision.FP32, options=fp32, weights=weights)
    if sha256_file(remade) != meta[SOURCE_KEY]:
        raise ExportError(f"parent model {parent!r} was converted from another fp32 ONNX than this model exports "
                          "(other weights or edgeseq version); export the fp32 .ort again")
    return dataclasses.replace(options.onnx, parent=str(remade))


def _convert(source: Path, out_dir: Path) -> tuple[Path, Path]:
    """(the .ort, the required-operators config) from onnxruntime's converter, its chatter kept off the console."""
    require("onnxruntime", EXTRA)
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    log = logging.getLogger("ort_format_model.utils")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        with redirect_stdout(io.StringIO()):
            convert_onnx_models_to_ort(source, output_dir=out_dir, optimization_styles=[OptimizationStyle.Fixed])
    except Exception as exc:
        raise ExportError(f"onnxruntime could not convert {source.name} to the ORT format: "
                          f"{(str(exc).splitlines() or [type(exc).__name__])[0][:200]}") from None
    finally:
        log.setLevel(level)
    ort_files = sorted(out_dir.glob("*.ort"))
    configs = sorted(out_dir.glob("*.config"))
    if len(ort_files) != 1 or len(configs) != 1:
        raise ExportError(f"onnxruntime's converter wrote {[p.name for p in out_dir.iterdir()]}, not one .ort and "
                          "its operators config")
    return ort_files[0], configs[0]


def _probe(path: Path, spec) -> None:
    """The .ort runs at another batch and T, with outputs of the declared shapes: the converter kept the axes."""
    from ..onnx.convert import PROBE_BATCH, PROBE_TIME
    from ..onnx.session import load_error, new_session

    ort = require("onnxruntime", EXTRA)
    batch = PROBE_BATCH if "batch" in spec.inputs[0].shape else 1
    time_ = PROBE_TIME if spec.has_dynamic_time else None
    feed = spec.example_inputs(batch=batch, time=time_, source="random")
    quiet = ort.SessionOptions()
    quiet.log_severity_level = 4
    quiet.add_session_config_entry("session.load_model_format", "ORT")
    try:
        outs = new_session(ort, str(path), quiet, ["CPUExecutionProvider"]).run(None, feed)
    except Exception as exc:
        raise ExportError(f"the .ort does not run at batch={batch} T={time_}: {load_error(exc)[:200]}") from None
    for out_spec, out in zip(spec.outputs, outs):
        want = spec.shape_for(out_spec, batch, time_)
        if tuple(out.shape) != want:
            raise ExportError(f"the .ort's output {out_spec.name!r} has shape {list(out.shape)} at batch={batch} "
                              f"T={time_}, expected {list(want)}")
