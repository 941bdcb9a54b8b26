"""The Python API refuses bad arguments with edgeseq's typed errors (never TypeError / ValueError / KeyError /
AttributeError), before any expensive work, and never leaves a file behind."""

import math
from pathlib import Path

import numpy as np
import onnx
import pytest

import edgeseq
from edgeseq.cli.args import tolerance_overrides
from edgeseq.errors import ArtifactError, InputError, OutputError
from edgeseq.formats import get as get_format
from edgeseq.formats import tensorrt as trt_format
from edgeseq.inputs import MAX_FEED_BYTES, feed_from_shapes
from edgeseq.models import get_model
from edgeseq.parity import Tolerance, validate_rel_l2, compare
from edgeseq.tensors import TensorSpec

ONNX = get_format("onnx")  # the ONNX format: its quantization defaults

FAST = dict(times=7, batches=1)  # one T, one batch, both sources: two cases


def _copy_with_metadata(src, dst, **changes):
    """A copy of an ONNX artifact whose edgeseq metadata is changed (None deletes the key)."""
    model = onnx.load(src)
    meta = {p.key: p.value for p in model.metadata_props}
    for key, value in changes.items():
        meta.pop(f"edgeseq.{key}", None) if value is None else meta.__setitem__(f"edgeseq.{key}", str(value))
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.save(model, str(dst))
    return str(dst)


def _profile_toml(tmp_path, runtime="onnxruntime", delegate="cpu", extra=""):
    path = tmp_path / f"{runtime}-{delegate}.toml"
    path.write_text(f'name = "mine"\nruntime = "{runtime}"\ndelegate = "{delegate}"\n{extra}\n'
                    '[transport]\nkind = "local"\n')
    return str(path)


# ---- export ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(out_dir="FILE"), "exists and is not a directory"),  # OutputError, as for the CLI's --out
    (dict(out_dir="FILE/sub"), "is a file, not a folder"),
    (dict(out_dir=None), "out_dir must be a path"),
    (dict(opset="x"), "opset must be an integer"),
    (dict(max_time=5), "max_time applies to TFLite"),
    (dict(format="tensorrt", shapes={"features": (1, 2)}), "three shapes"),
    (dict(format="tensorrt", shapes="features=1x2"), "bad --shapes 'features=1x2'"),  # the string, not 'f'
    (dict(precision="int8-static", quant=["op_types=Foo"]), "'Foo' is not an op type"),
    (dict(precision="int8-dynamic", quant={"weight_only": "Foo"}), "'Foo' is not an op type"),
    (dict(precision="int8-static", quant=["op_types="]), "op_types=all"),
])
def test_export_refuses_bad_arguments_before_exporting(tmp_path, kwargs, message):
    afile = tmp_path / "afile"
    afile.write_text("x")
    out = tmp_path / "out"
    kwargs = {"out_dir": out, **kwargs}
    if isinstance(kwargs["out_dir"], str):
        kwargs["out_dir"] = kwargs["out_dir"].replace("FILE", str(afile))
    with pytest.raises((InputError, OutputError), match=message):
        edgeseq.export("cbhg-lite", **kwargs)
    assert not out.exists()


def test_export_from_a_truncated_parent_is_an_artifact_error(tmp_path, lite_onnx):
    parent = tmp_path / "t.onnx"
    parent.write_bytes(open(lite_onnx.path, "rb").read()[:4000])
    with pytest.raises(ArtifactError, match="not a readable ONNX model"):
        edgeseq.export("cbhg-lite", out_dir=tmp_path / "out", precision="fp16", parent=parent)
    assert not (tmp_path / "out").exists()


def test_tensorrt_shapes_take_one_string_or_a_dict_of_three_shapes():
    one = "features=1x1x128:1x20x128:2x50x128"
    assert trt_format.parse_shape_profile(one) == trt_format.parse_shape_profile([one])
    assert trt_format.parse_shape_profile({"features": [(1, 1, 128), (1, 20, 128), (2, 50, 128)]})["features"].max == (
        2, 50, 128)
    with pytest.raises(InputError, match="three shapes"):
        trt_format.parse_shape_profile({"features": [(1, 1, 128), (1, 20.5, 128), (2, 50, 128)]})


def test_op_types_all_and_weight_only_none_are_the_explicit_defaults():
    assert ONNX.quant_config("int8-static", ["op_types=all", "weight_only=none"]).op_types == ()
    assert ONNX.quant_config("int8-static", ["weight_only=none"]).weight_only == ()
    assert ONNX.quant_config("int8-static", "op_types=Conv,MatMul").op_types == ("Conv", "MatMul")


# ---- check ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(times="7,20"), "times must be an integer or a list"),
    (dict(times=[7.5]), "times must be"),
    (dict(times=[]), "times is empty"),
    (dict(batches=0), "batches must be"),
    (dict(tolerances={"fp32": "abc"}), "fp32 tolerance must be a positive number"),
    (dict(tolerances={"fp32": -1}), "fp32 tolerance"),
    (dict(tolerances={"fp32": math.inf}), "fp32 tolerance"),
    (dict(tolerances={"fp32": math.nan}), "fp32 tolerance"),
    (dict(tolerances="fp32=1e-3"), "tolerances must be a Tolerances or a dict"),
    (dict(device=5), "device must be"),
    (dict(threads="2"), "threads must be an integer"),
])
def test_check_refuses_bad_arguments(lite_onnx, kwargs, message):
    with pytest.raises(InputError, match=message):
        edgeseq.check(lite_onnx, **{**FAST, **kwargs})


def test_check_of_nothing_is_an_input_error():
    with pytest.raises(InputError, match="the artifact must be a path"):
        edgeseq.check(None)


def test_one_int_and_one_string_are_one_item(lite_onnx):
    result = edgeseq.check(lite_onnx, times=7, batches=1, sources="random")
    assert [(c.time, c.batch, c.source) for c in result.cases] == [(7, 1, "random")] and result.passed


def test_tolerance_input_has_one_rule_for_the_api_and_the_cli():
    for bad in (-1, 0, math.inf, math.nan, 10, "1e-3", True):
        with pytest.raises(InputError, match="positive number below 10"):
            validate_rel_l2(bad)
    with pytest.raises(InputError, match="--tolerance .fp32=inf. must be a positive number below 10"):
        tolerance_overrides(["fp32=inf"])
    assert tolerance_overrides(["fp32=1e-4"]) == (("fp32", 1e-4),)


def test_tolerance_itself_refuses_only_nonsense():
    for bad in (-1, 0, math.nan, "1e-3", True):
        with pytest.raises(InputError, match="Tolerance.rel_l2"):
            Tolerance(rel_l2=bad)
    for bad in (-1, math.nan, "0"):
        with pytest.raises(InputError, match="max_abs"):
            Tolerance(rel_l2=1e-3, max_abs=bad)
    # inf never fails (bench/bench_quant.py measures with it), 20 is what an older report may hold, max_abs=0 is an
    # exact-match check: all valid for the dataclass, refused only as user input (validate_rel_l2)
    assert Tolerance(rel_l2=math.inf).rel_l2 == math.inf and Tolerance(rel_l2=20).rel_l2 == 20.0
    assert compare("y", np.ones(4), np.full(4, 1e3, np.float32), Tolerance(rel_l2=math.inf)).passed
    exact = Tolerance(rel_l2=1e-5, max_abs=0)
    assert compare("y", np.ones(4), np.ones(4, np.float32), exact).passed
    assert not compare("y", np.ones(4), np.full(4, 1 + 1e-7, np.float32), exact).passed


def test_bench_quant_builds_its_measuring_tolerance(monkeypatch):
    import runpy
    folder = Path(__file__).resolve().parents[1] / "bench"
    monkeypatch.syspath_prepend(str(folder))  # as `python bench/bench_quant.py` runs it: bench/_common importable
    bench = runpy.run_path(str(folder / "bench_quant.py"), run_name="bench")
    assert bench["LOOSE"].rel_l2 == math.inf


def test_model_that_contradicts_the_artifact_is_refused(lite_onnx, tmp_path):
    with pytest.raises(InputError, match="the artifact is cbhg-lite, but the model given is cbhg; leave it out or give cbhg-lite"):
        edgeseq.check(lite_onnx, "cbhg", **FAST)
    bare = _copy_with_metadata(lite_onnx.path, tmp_path / "bare.onnx", model=None)
    with pytest.raises(InputError, match="--model NAME"):
        edgeseq.check(bare, **FAST)
    assert edgeseq.check(bare, "cbhg-lite", **FAST).passed  # --model still names a file without metadata


def test_a_sweep_past_the_artifacts_max_time_is_refused_before_it_runs(lite_onnx, tmp_path):
    short = _copy_with_metadata(lite_onnx.path, tmp_path / "short.onnx", max_time=8)
    with pytest.raises(InputError, match="serves T up to 8; the sweep asks for T=9"):
        edgeseq.check(short, times=[7, 9], batches=1)
    assert edgeseq.check(short, times=8, batches=1).passed


def test_bisect_takes_a_model_name_like_check(lite_onnx):
    result = edgeseq.bisect(lite_onnx, "cbhg-lite", time=7)
    assert result.model == "cbhg-lite" and result.layers


# ---- device profiles ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("runtime, delegate, extra, message", [
    ("litert", "xnnpack", "", "runs litert, which takes .tflite files; this artifact is onnx"),
    ("torch", "cuda", "", "is PyTorch on this GPU .* not a runtime for artifact files; .* use --device cuda"),
    ("onnxruntime", "xnnpack", "", "not the xnnpack delegate"),
    ("onnxruntime", "cpu", 'precisions = ["int8-static"]', "runs int8-static; the artifact is fp32"),
])
def test_a_profile_that_cannot_run_the_artifact_as_described_is_refused(lite_onnx, tmp_path, runtime, delegate,
                                                                        extra, message):
    device = _profile_toml(tmp_path, runtime, delegate, extra)
    with pytest.raises(InputError, match=message):
        edgeseq.check(lite_onnx, device=device, **FAST)
    with pytest.raises(InputError, match=message):
        edgeseq.profile(lite_onnx, device=device, iterations=1)


def test_profile_tolerances_apply_under_explicit_ones(lite_onnx, tmp_path):
    device = _profile_toml(tmp_path, extra="[tolerances]\nfp32 = 1e-9")
    strict = edgeseq.check(lite_onnx, device=device, **FAST)
    assert not strict.passed and strict.cases[0].outputs[0].tolerance.rel_l2 == 1e-9
    loose = edgeseq.check(lite_onnx, device=device, tolerances={"fp32": 1e-4}, **FAST)
    assert loose.passed and loose.cases[0].outputs[0].tolerance.rel_l2 == 1e-4


def test_a_runner_already_open_takes_no_device(lite_onnx):
    with edgeseq.load(lite_onnx) as runner:
        with pytest.raises(InputError, match="already open"):
            edgeseq.check(runner, device="cpu", **FAST)


# ---- profile --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(time=-5), "time must be an integer >= 1"),
    (dict(time=0), "time must be an integer >= 1"),  # was: silently the model's 200
    (dict(batch=0), "batch must be an integer >= 1"),
    (dict(budget_s=-1, iterations=3), "budget_s must be a positive"),  # was: one run
    (dict(budget_s=0), "budget_s must be a positive"),
    (dict(iterations="3"), "iterations must be"),
    (dict(shapes={"features": "1x5x128"}), "shapes maps input names"),
    (dict(time=100_000_000), r"47\.7 GiB"),
    (dict(shapes="features=1x99999999x128"), r"47\.7 GiB"),
])
def test_profile_refuses_bad_arguments(lite_onnx, kwargs, message):
    with pytest.raises(InputError, match=message):
        edgeseq.profile(lite_onnx, **{"iterations": 1, **kwargs})


def test_profile_shapes_take_one_string(lite_onnx):
    result = edgeseq.profile(lite_onnx, shapes="features=1x5x128", warmup=0, iterations=1)
    assert (result.batch, result.time) == (1, 5)


def test_inputs_are_float32_and_capped_before_allocation():
    spec = get_model("cbhg-lite")
    assert spec.example_inputs(time=9, source="random")["features"].dtype.name == "float32"
    with pytest.raises(InputError, match="GiB"):
        spec.example_inputs(batch=MAX_FEED_BYTES // (4 * 128) + 1, time=1, source="random")
    specs = (TensorSpec("x", (None, 4), "float32"),)
    assert feed_from_shapes(specs, {"x": (2, 4)})["x"].dtype.name == "float32"
    with pytest.raises(InputError, match="at most 1 GiB"):
        feed_from_shapes(specs, {"x": (MAX_FEED_BYTES // 16 + 1, 4)})


# ---- preflight ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [b"", b"\x08\x07"])
def test_preflight_of_a_file_without_a_graph_is_refused(tmp_path, data):
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    with pytest.raises(ArtifactError, match="not an ONNX model: it holds no graph"):
        trt_format.preflight(path)

