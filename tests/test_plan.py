"""plan_matrix directly: what the main job will build and check, decided before any work (no export runs here)."""

from __future__ import annotations

import pytest

from edgeseq.enums import Format, Precision
from edgeseq.errors import InputError, UnsupportedError
from edgeseq.plan import MatrixOptions, plan_matrix


def _plan(tmp_path, formats=("onnx",), precisions=("fp32",), **options):
    return plan_matrix("cbhg-lite", formats, precisions, out_dir=tmp_path / "out",
                       options=MatrixOptions(times=(1, 7), batches=(1,), **options))


def test_fp32_comes_first_per_format_and_is_always_built(tmp_path):
    plan = _plan(tmp_path, ("onnx", "tensorrt", "onnx"), ("int8-static",))
    assert [(s.format, s.precision) for s in plan.exports] == [
        (Format.ONNX, Precision.FP32), (Format.ONNX, Precision.INT8_STATIC),
        (Format.TENSORRT, Precision.FP32), (Format.TENSORRT, Precision.INT8_STATIC)]
    assert plan.formats == [Format.ONNX, Format.TENSORRT] and plan.has_int8
    assert len(plan.feeds) == 2 * 1 * len(plan.spec.sources)  # T x batch x sources
    assert not (tmp_path / "out").exists()  # planning writes nothing


def test_all_precisions_are_each_formats_own(tmp_path):
    plan = _plan(tmp_path, ("onnx", "tensorrt"), ("all",))
    per_format = {f: [s.precision for s in plan.exports if s.format is f] for f in plan.formats}
    assert per_format[Format.ONNX] == list(Precision)
    assert Precision.INT8_DYNAMIC not in per_format[Format.TENSORRT]  # TensorRT has no dynamic int8
    with pytest.raises(UnsupportedError, match="TensorRT export at int8-dynamic"):
        _plan(tmp_path, ("tensorrt",), ("int8-dynamic",))  # named outright: every format must have it


def test_settings_reach_only_the_formats_that_take_them(tmp_path):
    plan = _plan(tmp_path, ("onnx", "tensorrt"), ("int8-static",), quant=("per_channel=false",),
                 shapes=("features=1x1x128:1x50x128:2x300x128",))
    by_step = {(s.format, s.precision): s.settings for s in plan.exports}
    assert by_step[(Format.ONNX, Precision.INT8_STATIC)].quant == ("per_channel=false",)
    assert by_step[(Format.ONNX, Precision.FP32)].quant is None  # quantization settings: fp16 / int8 only
    assert by_step[(Format.TENSORRT, Precision.INT8_STATIC)].quant is None  # TensorRT uses its own defaults
    assert by_step[(Format.TENSORRT, Precision.FP32)].shapes == ("features=1x1x128:1x50x128:2x300x128",)
    assert by_step[(Format.ONNX, Precision.FP32)].shapes is None
    step = next(s for s in plan.exports if s.format is Format.ONNX and s.precision is Precision.INT8_STATIC)
    assert step.options(tmp_path / "p.fp32.onnx").parent == str(tmp_path / "p.fp32.onnx")
    assert step.options().quant.per_channel is False


@pytest.mark.parametrize("formats, options, says", [
    (("onnx",), {"shapes": ("features=1x1x128:1x2x128:1x3x128",)}, "--shapes applies to TensorRT exports only"),
    (("tensorrt",), {"max_time": 100}, "max_time applies to TFLite / Core ML / ExecuTorch exports only"),
    (("tensorrt",), {"quant": ("per_channel=false",)}, "--quant applies to ONNX .*exports only"),
])
def test_a_setting_no_requested_format_takes_is_refused(tmp_path, formats, options, says):
    precisions = ("int8-static",) if "quant" in options else ("fp32",)
    with pytest.raises(InputError, match=says):
        _plan(tmp_path, formats, precisions, **options)


def test_a_bad_shape_profile_fails_in_the_plan(tmp_path):
    with pytest.raises(InputError, match="features"):
        _plan(tmp_path, ("tensorrt",), shapes=("features=1x1x128:1x2x128:1x3x64",))


def test_the_sweep_is_checked_against_what_the_artifacts_serve(tmp_path):
    pytest.importorskip("litert_torch")
    with pytest.raises(InputError, match="serves T up to 5; the sweep asks for T=7"):
        _plan(tmp_path, ("onnx", "tflite"), max_time=5)
    assert len(_plan(tmp_path, ("onnx", "tflite"), max_time=7).feeds) > 0  # just at the limit


def test_torch_is_never_a_requested_format(tmp_path):
    with pytest.raises(InputError, match="reference"):
        _plan(tmp_path, ("torch",))


def test_a_format_that_refuses_a_model_says_so_before_any_work(monkeypatch, tmp_path):
    """The contract's refuses(spec) (no registered format refuses a registered model today; this one is made to):
    asked for by name it is one line before any work, -f all leaves it out, and the support table omits the pair."""
    from edgeseq.enums import Format
    from edgeseq.formats import support_table, unsupported_pairs
    from edgeseq.formats.ort import OrtFormat

    monkeypatch.setattr(OrtFormat, "refuses", lambda self, spec: "it keeps state" if spec.state else "")
    assert Format.ORT not in support_table()["cbhg-lite-stream"] and Format.ORT in support_table()["cbhg-lite"]
    assert unsupported_pairs() == {("cbhg-lite-stream", Format.ORT): "it keeps state"}
    with pytest.raises(InputError, match="^ORT cannot export cbhg-lite-stream: it keeps state$"):
        plan_matrix("cbhg-lite-stream", ["onnx", "ort"], out_dir=tmp_path / "a")
    assert not (tmp_path / "a").exists()
    assert Format.ORT not in plan_matrix("cbhg-lite-stream", ["all"], out_dir=tmp_path / "b").formats
    assert Format.ORT in plan_matrix("cbhg-lite", ["all"], out_dir=tmp_path / "c").formats
