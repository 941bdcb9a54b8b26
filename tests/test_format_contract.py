"""Every registered format meets formats/contract.py, and nothing outside formats/ knows a format's facts."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from edgeseq import formats
from edgeseq.enums import Format, Precision
from edgeseq.errors import ArtifactError, InputError, UnsupportedError
from edgeseq.formats.contract import SETTING_WHAT, ExportFormat, ExportSettings, validate_contract

ROOT = Path(__file__).resolve().parent.parent
REGISTERED = formats.registered()


@pytest.mark.parametrize("fmt", REGISTERED, ids=lambda f: f.format.value)
def test_every_registered_format_meets_the_contract(fmt):
    assert isinstance(fmt, ExportFormat)
    assert validate_contract(fmt) == []
    assert formats.get(fmt.format) is fmt and formats.get(fmt.format.value) is fmt
    assert fmt.artifact_name("m", Precision.FP32) == f"m.fp32{fmt.suffixes[0]}"
    assert fmt.install_hint().startswith("pip install 'edgeseq[")
    for precision in Precision:
        if precision in fmt.precisions:
            fmt.validate_precision(precision)
        else:
            with pytest.raises(UnsupportedError, match=fmt.title):
                fmt.validate_precision(precision)


def test_a_format_without_a_fact_is_named():
    class Half(ExportFormat):  # the methods but none of the facts
        def _options(self, precision, settings): ...
        def export(self, spec, out, *, precision=Precision.FP32, options=None, weights=None): ...
        def runner(self, path, *, device=None, threads=None): ...
        def runtime_devices(self): return ["cpu"]
        def read_metadata(self, path): return {}

    assert set(validate_contract(Half())) == {"format", "title", "extra", "precisions", "suffixes", "needs", "runtime"}
    with pytest.raises(TypeError):  # a missing method fails at construction, not at the first export
        type("NoRunner", (ExportFormat,), {})()


def test_suffixes_belong_to_one_format_each_and_detect_reads_them(tmp_path):
    seen = [s for f in REGISTERED for s in f.suffixes]
    assert len(seen) == len(set(seen))
    for fmt in REGISTERED:
        path = tmp_path / f"x{fmt.suffixes[0]}"
        if fmt.folder:  # Core ML's .mlpackage: a folder whose manifest names its root model
            path.mkdir()
            (path / "Manifest.json").write_text('{"itemInfoEntries": {"m": {"path": "x"}}, "rootModelIdentifier": "m"}')
            assert formats.detect_format(path) is fmt.format
            continue
        heads = (b"\x08\x07\x12\x00TFL3", b"\x08\x07\x12\x00ORTM",  # ONNX + TFLite + TensorRT; ORT
                 b"\x3c\x00\x00\x00ET12")  # ExecuTorch
        path.write_bytes(next(h for h in heads if fmt.looks_like(h)) + bytes(64))
        assert formats.detect_format(path) is fmt.format


def test_a_folder_is_an_artifact_only_for_a_folder_format(tmp_path):
    for name, message in (("x.onnx", "is a directory, not a model file"), ("x.mlpackage", "is not a Core ML package")):
        (tmp_path / name).mkdir()
        with pytest.raises(ArtifactError, match=message):
            formats.detect_format(tmp_path / name)
    (tmp_path / "y.mlpackage").write_bytes(b"\x08\x07\x12\x00TFL3" + bytes(64))
    with pytest.raises(ArtifactError, match="is a file; a Core ML package"):
        formats.detect_format(tmp_path / "y.mlpackage")


@pytest.mark.parametrize("setting, value", [("shapes", ("features=1x1x128:1x2x128:1x3x128",)), ("max_time", 100),
                                            ("quant", ("per_channel=false",)), ("calibration", "calib/")])
def test_a_setting_is_taken_by_the_formats_that_declare_it_and_refused_by_the_rest(setting, value):
    settings = ExportSettings(**{setting: value})
    precision = Precision.INT8_STATIC if setting in ("quant", "calibration") else Precision.FP32
    takers = [f for f in REGISTERED if setting in f.settings]
    assert takers, f"no format takes {setting}"
    for fmt in REGISTERED:
        if fmt in takers or precision not in fmt.precisions:
            continue
        with pytest.raises(InputError, match=rf"^{re.escape(SETTING_WHAT[setting][0])} applies to .*"
                                             rf"{re.escape(' / '.join(t.title for t in takers))} exports only .*{fmt.format.value} does"):
            fmt.options(precision, settings)


def test_quantization_defaults_are_the_formats_own():
    onnx, trt = formats.get("onnx"), formats.get("tensorrt")
    assert onnx.default_quant("int8-static").reduce_range  # 7-bit weights: exact on every CPU
    assert trt.default_quant("int8-static").activation_type.value == "int8"  # TensorRT reads signed Q/DQ only
    with pytest.raises(UnsupportedError, match="no int8-dynamic quantization defaults for tensorrt"):
        trt.default_quant("int8-dynamic")
    with pytest.raises(InputError, match="is not an op type"):
        onnx.quant_config("int8-static", ["op_types=Konv"])


def test_torch_is_the_reference_not_a_registered_format():
    with pytest.raises(UnsupportedError, match="reference"):
        formats.get(Format.TORCH)


def test_tensorrt_reads_its_metadata_from_the_sidecar(tmp_path):
    engine = tmp_path / "m.fp16.engine"
    engine.write_bytes(b"engine")
    assert formats.read_metadata(engine) == {}  # an engine from trtexec: no sidecar, no metadata
    (tmp_path / "m.fp16.engine.json").write_text(
        '{"schema": "edgeseq.tensorrt-engine/1", "tensorrt_version": "10.8", "gpu_name": "g", '
        '"compute_capability": "9.0", "model": "cbhg", "precision": "fp16"}')
    assert formats.read_metadata(engine) == {"edgeseq.model": "cbhg", "edgeseq.precision": "fp16"}


# ---- nothing outside formats/ knows a format's facts -------------------------------------------------------------

_FACTS = re.compile(r"""["'](onnx|tflite|tensorrt|trt\.onnx|\.onnx|\.tflite|\.engine|onnxruntime|litert)["']""")
# modules outside formats/ that may name a format: the enum itself, the environment's package list, the device
# profiles (a profile names its runtime), the remote side (the agent runs on a device without edgeseq's formats),
# and ONNX Runtime's per-stage profiler
_MEMBERS = re.compile(r"\bFormat\.(ONNX|TFLITE|TENSORRT)\b")  # Format.TORCH, the reference, is not a format here
_ALLOWED = {"enums.py", "environment.py", "devices.py", "stage_profile.py", "_lazy.py"}


def test_no_format_branches_outside_formats():
    offenders = []
    for path in sorted((ROOT / "edgeseq").rglob("*.py")):
        rel = path.relative_to(ROOT / "edgeseq")
        if rel.parts[0] in ("formats", "remote", "cli", "report", "kernels") or str(rel) in _ALLOWED:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):  # a comparison or a table keyed by a format's name, suffix or runtime
            if isinstance(node, (ast.Compare, ast.Dict)):
                text = ast.unparse(node)
                if _FACTS.search(text) or _MEMBERS.search(text):
                    offenders.append(f"{rel}:{node.lineno}: {text[:80]}")
    assert offenders == []
