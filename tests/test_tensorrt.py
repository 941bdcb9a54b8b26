"""TensorRT: everything around the engine is tested here (preflight, profile, build plan and trtexec command, the
sidecar's refusal, the missing extra, the CLI without TensorRT); engine build/run tests are marked `tensorrt` and
skip where TensorRT cannot be imported (no machine of this project can install it)."""

import json
import shlex

import numpy as np
import onnx
import pytest
import torch
from conftest import assert_one_line_error
from onnx import TensorProto, helper, numpy_helper

import edgeseq
from edgeseq._lazy import available
from edgeseq.enums import Format, Precision
from edgeseq.errors import ArtifactError, ExportError, InputError, MissingExtraError, UnsupportedError
from edgeseq.formats import detect_format, runner_for, support_table
from edgeseq.formats import tensorrt as trt_format
from edgeseq.formats.tensorrt import EngineBuild, ShapeRange, TensorRTOptions

HAVE_TRT = available("tensorrt")
needs_tensorrt = pytest.mark.skipif(not HAVE_TRT, reason="needs TensorRT (not installable here)")
needs_engine = pytest.mark.skipif(not (HAVE_TRT and torch.cuda.is_available()),
                                  reason="needs TensorRT (not installable here) and a CUDA GPU")
no_tensorrt = pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here: the no-TensorRT path is not reached")


# ---- preflight ------------------------------------------------------------------------------------------------------


def _model(nodes, inits=(), inputs=None, outputs=None, opset=17):
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "time", 4])]
    outputs = outputs or [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _gru(lite_onnx, **attrs):
    """Our exported cbhg-lite with its GRU's attributes changed."""
    model = onnx.load(lite_onnx.path)
    gru = next(n for n in model.graph.node if n.op_type == "GRU")
    for key, value in attrs.items():
        for a in list(gru.attribute):
            if a.name == key:
                gru.attribute.remove(a)
        gru.attribute.append(helper.make_attribute(key, value))
    return model, gru.name


def test_our_exported_models_pass_preflight(lite_onnx):
    result = trt_format.preflight(lite_onnx.path)
    assert result.ok, result.issues
    assert result.ops["GRU"] == 1 and result.ops["Conv"] >= 16 and result.opset == 17
    assert "all supported" in result.summary()
    assert json.loads(json.dumps(result.to_dict()))["ok"] is True


@pytest.mark.parametrize("model", list(support_table()))
def test_every_model_gets_a_tensorrt_ready_onnx_that_matches(model, tmp_path):
    """The file a TensorRT build starts from (any machine): it passes the preflight, and ONNX Runtime runs it to
    parity. This checks the ONNX, not an engine: the (model, tensorrt) pair is covered by the engine test below."""
    art = trt_format.export(edgeseq.get_model(model), tmp_path / f"{model}.fp32.engine",
                            options=TensorRTOptions(engine=EngineBuild.NEVER))
    assert art.path.endswith(".trt.onnx")
    plan = json.loads((tmp_path / f"{model}.fp32.trt-build.json").read_text())
    assert plan["preflight"]["ok"] and plan["onnx_sha256"] == art.sha256, plan["preflight"]
    result = edgeseq.check(art.path, model, times=None if model == "seq-cnn" else (1, 7, 200), batches=(1, 3))
    assert result.passed, result.failures


@needs_engine
@pytest.mark.tensorrt
@pytest.mark.parametrize("model", [pytest.param(m, marks=pytest.mark.covers(m, "tensorrt")) for m in support_table()])
def test_every_model_gets_a_tensorrt_engine_that_matches(model, tmp_path):
    """The engine itself, built and checked against PyTorch (TensorRT and a CUDA GPU only)."""
    art = trt_format.export(edgeseq.get_model(model), tmp_path / f"{model}.fp32.engine",
                            options=TensorRTOptions(engine=EngineBuild.ALWAYS))
    assert art.path.endswith(".engine")
    result = edgeseq.check(art.path, model, times=None if model == "seq-cnn" else (1, 7, 200), batches=(1, 3))
    assert result.passed, result.failures


@pytest.mark.parametrize(
    "attrs, reason",
    [
        ({"activations": ["Sigmoid", "Tanh", "Sigmoid", "Relu"]}, "differ between the forward and reverse pass"),
        ({"activations": ["Affine", "Tanh", "Affine", "Tanh"]}, "have no TensorRT activation"),
        ({"layout": 1}, "layout=1"),
        ({"direction": "sideways"}, "direction 'sideways'"),
        ({"linear_before_reset": 2}, "linear_before_reset=2"),
    ],
)
def test_gru_attribute_restrictions_name_the_node(lite_onnx, attrs, reason):
    model, name = _gru(lite_onnx, **attrs)
    result = trt_format.preflight(model)
    assert not result.ok
    assert [(i.node, i.op) for i in result.issues] == [(name, "GRU")]
    assert reason in result.issues[0].reason and name in result.summary()


def test_gru_variants_the_parser_accepts(lite_onnx):
    for attrs in ({"linear_before_reset": 0}, {"direction": "forward"},
                  {"activations": ["HardSigmoid", "Softsign", "HardSigmoid", "Softsign"]}):
        model, _ = _gru(lite_onnx, **attrs)
        assert trt_format.preflight(model).ok, attrs


class _Det(torch.nn.Module):
    """A real model with an operator TensorRT's parser does not import (ONNX Det)."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(6, 6)

    def forward(self, x):
        y = self.proj(x)
        return y * torch.linalg.det(y[:, :2, :2]).reshape(-1, 1, 1)


_DET_ARGS = dict(example_inputs=torch.randn(2, 9, 6), input_names=["x"], output_names=["y"],
                 dynamic_axes={"x": {0: "batch", 1: "time"}, "y": {0: "batch", 1: "time"}})


def test_a_model_with_an_unsupported_op_is_named_and_not_exported(tmp_path):
    art = edgeseq.export(_Det(), "onnx", out_dir=tmp_path / "onnx", **_DET_ARGS)
    result = trt_format.preflight(art.path)
    assert [(i.node, i.op) for i in result.issues] == [("/Det", "Det")]
    with pytest.raises(ExportError, match=r"1 of \d+ nodes would not parse in TensorRT: /Det \(Det\)"):
        edgeseq.export(_Det(), "tensorrt", out_dir=tmp_path / "trt", **_DET_ARGS)
    assert list((tmp_path / "trt").iterdir()) == []  # the ONNX it wrote on the way is removed


def test_node_level_restrictions():
    const = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    nodes = [
        helper.make_node("MaxPool", ["x"], ["p", "idx"], name="pool", kernel_shape=[2], dilations=[2]),
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Slice", ["x", "axes", "axes", "s"], ["sl"], name="slice_dyn_axes"),
        helper.make_node("Unsqueeze", ["x", "axes"], ["u"], name="unsq_ok"),
        helper.make_node("Unique", ["x"], ["q"], name="uniq"),
        helper.make_node("FancyOp", ["x"], ["f"], name="custom", domain="com.example"),
        helper.make_node("NotAnOnnxOp", ["x"], ["n"], name="unknown"),
        helper.make_node("TopK", ["x", "k"], ["t", "ti"], name="topk", sorted=0),
        helper.make_node("Resize", ["x", "", "scales"], ["r"], name="resize", mode="cubic"),
    ]
    inits = [const, numpy_helper.from_array(np.array([5000], dtype=np.int64), "k"),
             numpy_helper.from_array(np.ones(3, dtype=np.float32), "scales")]
    result = trt_format.preflight(_model(nodes, inits))
    by_node = {}
    for issue in result.issues:
        by_node.setdefault(issue.node, []).append(issue.reason)
    assert set(by_node) == {"pool", "slice_dyn_axes", "uniq", "custom", "unknown", "topk", "resize"}
    assert any("dilations" in r for r in by_node["pool"]) and any("Indices" in r for r in by_node["pool"])
    assert by_node["slice_dyn_axes"] == ["axes must be an initializer (a build-time constant)"]
    assert "plugin" in by_node["custom"][0] and "not supported" in by_node["uniq"][0]
    assert any("3840" in r for r in by_node["topk"]) and any("sorted" in r for r in by_node["topk"])
    assert "cubic" in by_node["resize"][0]


def test_subgraphs_are_checked_and_opset_range_is_a_warning():
    body = helper.make_graph([helper.make_node("Det", ["x"], ["d"], name="det_in_branch")], "then", [],
                             [helper.make_tensor_value_info("d", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["e"], name="id")], "else", [],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    cond = numpy_helper.from_array(np.array(True), "cond")
    model = _model([helper.make_node("If", ["cond"], ["y"], name="if", then_branch=body, else_branch=other)],
                   [cond], opset=21)
    result = trt_format.preflight(model)
    assert [(i.node, i.op) for i in result.issues] == [("det_in_branch", "Det")]
    assert result.nodes == 3 and "opset 21" in result.warnings[0]


def _qdq(zero_point: np.ndarray):
    scale = numpy_helper.from_array(np.array(0.05, dtype=np.float32), "scale")
    zp = numpy_helper.from_array(zero_point, "zp")
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    nodes = [helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["xq"], name="q"),
             helper.make_node("DequantizeLinear", ["xq", "scale", "zp"], ["xd"], name="dq"),
             helper.make_node("MatMul", ["xd", "w"], ["y"], name="mm")]
    return _model(nodes, [scale, zp, w])


def test_qdq_zero_points_must_be_symmetric_int8():
    good = trt_format.preflight(_qdq(np.array(0, dtype=np.int8)))
    assert good.ok and good.quantized
    # onnxruntime's default static quantization (asymmetric uint8 activations) is what TensorRT cannot take
    bad = trt_format.preflight(_qdq(np.array(128, dtype=np.uint8)))
    assert {(i.node, i.op) for i in bad.issues} == {("q", "QuantizeLinear"), ("dq", "DequantizeLinear")}
    reasons = [i.reason for i in bad.issues]
    assert sum("is uint8" in r for r in reasons) == 2 and sum("must be zero" in r for r in reasons) == 2


def test_preflight_bad_files(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        trt_format.preflight(tmp_path / "none.onnx")
    garbage = tmp_path / "g.onnx"
    garbage.write_bytes(b"\x08garbage")
    with pytest.raises(ArtifactError, match="cannot read"):
        trt_format.preflight(garbage)


# ---- profile, plan and trtexec command -------------------------------------------------------------------------------


def test_profile_comes_from_the_model_and_can_be_overridden():
    spec = edgeseq.get_model("cbhg")
    assert trt_format.default_shape_profile(spec) == {"features": ShapeRange((1, 1, 128), (1, 200, 128), (16, 1000, 128))}
    fixed = trt_format.default_shape_profile(edgeseq.get_model("seq-cnn"))["features"]
    assert fixed == ShapeRange((1, 32, 40), (1, 32, 40), (16, 32, 40))
    shapes = trt_format.parse_shape_profile(["features=1x1x128:4x300x128:8x2000x128"])
    assert trt_format.resolve_shape_profile(spec, shapes)["features"].max == (8, 2000, 128)


@pytest.mark.parametrize(
    "text, message",
    [
        ("features=1x1x128", "NAME=MIN:OPT:MAX"),
        ("nope=1x1x128:1x2x128:1x3x128", "not an input of cbhg"),
        ("features=1x1x64:1x2x64:1x3x64", "axis 2 is fixed at 128"),
        ("features=1x1:1x2:1x3", "rank 3"),
        ("features=1x9x128:1x2x128:1x30x128", "min <= opt <= max"),
    ],
)
def test_bad_shapes_are_input_errors(text, message):
    with pytest.raises(InputError, match=message):
        trt_format.resolve_shape_profile(edgeseq.get_model("cbhg"), trt_format.parse_shape_profile([text]))


PROFILE = {"features": ShapeRange((1, 1, 128), (1, 200, 128), (16, 1000, 128))}
SHAPES = "--minShapes=features:1x1x128 --optShapes=features:1x200x128 --maxShapes=features:16x1000x128"


@pytest.mark.parametrize(
    "precision, fp16_onnx, flags",
    [
        (Precision.FP32, False, "--noTF32"),
        (Precision.FP16, False, "--fp16"),
        (Precision.FP16, True, "--stronglyTyped"),
        (Precision.INT8_STATIC, False, "--stronglyTyped --noTF32"),
    ],
)
def test_trtexec_command_is_exact(precision, fp16_onnx, flags):
    plan = trt_format.make_plan("cbhg", precision, "cbhg.x.trt.onnx", "cbhg.x.engine", PROFILE, fp16_onnx=fp16_onnx)
    assert plan.trtexec_command() == (f"trtexec --onnx=cbhg.x.trt.onnx --saveEngine=cbhg.x.engine {SHAPES} "
                                      f"--timingCacheFile=tensorrt.timing.cache {flags}")
    data = plan.to_dict()
    assert data["trtexec"] == plan.trtexec_command() and data["profile"]["features"]["max"] == [16, 1000, 128]
    assert data["network"]["strongly_typed"] is (flags.startswith("--stronglyTyped"))


def test_trtexec_quotes_names_and_omits_shapes_of_a_fixed_profile():
    odd = {"in:0": ShapeRange((1, 4), (2, 4), (8, 4)), "b": ShapeRange((3,), (3,), (3,))}
    argv = trt_format.make_plan("m", Precision.FP32, "my model.onnx", "m.engine", odd, workspace_mib=512).trtexec_argv()
    assert "--minShapes='in:0':1x4,b:3" in argv and "--memPoolSize=workspace:512" in argv
    assert shlex.split(" ".join(shlex.quote(a) for a in argv)) == argv  # the command line round-trips
    fixed = trt_format.make_plan("m", Precision.FP32, "m.onnx", "m.engine", {"b": ShapeRange((3,), (3,), (3,))})
    assert not any(a.startswith("--minShapes") for a in fixed.trtexec_argv())


def test_precision_support_is_explicit(tmp_path):
    with pytest.raises(UnsupportedError, match="no dynamic int8"):
        trt_format.validate_precision(Precision.INT8_DYNAMIC)
    trt_format.validate_precision(Precision.INT8_STATIC)  # the ONNX exporter makes the Q/DQ model
    trt_format.validate_precision(Precision.INT8_STATIC, TensorRTOptions(onnx_path=tmp_path / "q.onnx"))


# ---- export without an engine (what every machine of this project does) ---------------------------------------------


def test_plan_only_export_writes_onnx_plan_and_says_so(tmp_path, lite_onnx):
    options = TensorRTOptions(engine=EngineBuild.NEVER)
    art = trt_format.export(edgeseq.get_model("cbhg-lite"), tmp_path / "cbhg-lite.fp16.engine",
                            precision="fp16", options=options)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cbhg-lite.fp16.trt-build.json", "cbhg-lite.fp16.trt.onnx"]
    assert art.format == "tensorrt" and art.precision == "fp16" and art.path.endswith("cbhg-lite.fp16.trt.onnx")
    assert art.sha256 == lite_onnx.sha256  # the TensorRT-ready ONNX is the ONNX exporter's (byte-identical) file
    assert art.notes[0].startswith(trt_format.NO_ENGINE) and "trtexec --onnx=cbhg-lite.fp16.trt.onnx" in art.notes[0]
    plan = json.loads((tmp_path / "cbhg-lite.fp16.trt-build.json").read_text())
    assert plan["engine_built"] is False and plan["why_no_engine"]
    assert plan["builder_flags"] == {"set": ["FP16"], "cleared": []} and "--fp16" in plan["trtexec"]
    assert plan["preflight"]["ok"] and plan["onnx_sha256"] == art.sha256 and plan["weights_sha256"]
    assert plan["profile"]["features"] == {"min": [1, 1, 128], "opt": [1, 200, 128], "max": [16, 1000, 128]}


def _linear_qdq(path):
    """A Q/DQ model with the interface of a tiny user module (a stand-in for the quantization work's output)."""
    scale = numpy_helper.from_array(np.array(0.05, dtype=np.float32), "scale")
    zp = numpy_helper.from_array(np.array(0, dtype=np.int8), "zp")
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    nodes = [helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "scale", "zp"], ["xd"]),
             helper.make_node("MatMul", ["xd", "w"], ["y"])]
    onnx.save(_model(nodes, [scale, zp, w], outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                                                    ["batch", "time", 4])]), path)
    return path


def test_int8_plan_from_a_qdq_onnx(tmp_path):
    spec = edgeseq.ModelSpec.from_module(torch.nn.Linear(4, 4, bias=False), torch.randn(2, 9, 4), ["x"], ["y"],
                                         {"x": {0: "batch", 1: "time"}, "y": {0: "batch", 1: "time"}})
    qdq = _linear_qdq(tmp_path / "q.onnx")
    out = tmp_path / "out"
    art = trt_format.export(spec, out / "lin.int8-static.engine", precision="int8-static",
                            options=TensorRTOptions(onnx_path=qdq, engine=EngineBuild.NEVER))
    plan = json.loads((out / "lin.int8-static.trt-build.json").read_text())
    assert plan["network"]["strongly_typed"] and "--stronglyTyped --noTF32" in plan["trtexec"]
    assert plan["profile"]["x"] == {"min": [1, 1, 4], "opt": [1, 9, 4], "max": [16, 1000, 4]}
    assert plan["preflight"]["ops"]["QuantizeLinear"] == 1 and art.precision == "int8-static"
    plain = edgeseq.export(torch.nn.Linear(4, 4), "onnx", out_dir=tmp_path / "plain",
                           **{**_DET_ARGS, "example_inputs": torch.randn(2, 9, 4)})
    with pytest.raises(ExportError, match="QuantizeLinear/DequantizeLinear"):  # an fp32 ONNX is no int8 source
        trt_format.export(spec, tmp_path / "bad" / "lin.engine", precision="int8-static",
                          options=TensorRTOptions(onnx_path=plain.path, engine=EngineBuild.NEVER))
    assert list((tmp_path / "bad").iterdir()) == []


@no_tensorrt
def test_asking_for_an_engine_without_tensorrt_names_the_extra(tmp_path):
    with pytest.raises(MissingExtraError, match=r"pip install 'edgeseq\[tensorrt\]'"):
        trt_format.export(edgeseq.get_model("cbhg-lite"), tmp_path / "x.engine",
                          options=TensorRTOptions(engine=EngineBuild.ALWAYS))
    assert list(tmp_path.iterdir()) == []
    assert trt_format.runtime_devices() == [] and not trt_format.can_build()[0]


# ---- the sidecar: engines are not portable -------------------------------------------------------------------------

HERE = {"tensorrt_version": "10.3.0", "gpu_name": "Orin (nvgpu)", "compute_capability": "8.7"}


def _fake_engine(tmp_path, **sidecar):
    engine = tmp_path / "cbhg.fp16.engine"
    engine.write_bytes(b"not really an engine")
    data = {"schema": trt_format.SIDECAR_SCHEMA, **HERE, "model": "cbhg", "precision": "fp16", **sidecar}
    (tmp_path / "cbhg.fp16.engine.json").write_text(json.dumps(data))
    return engine


def test_sidecar_mismatch_is_refused_in_one_line(tmp_path, monkeypatch):
    engine = _fake_engine(tmp_path, gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0",
                          tensorrt_version="10.8.0")
    monkeypatch.setattr("edgeseq.formats.tensorrt.build.this_machine", lambda device=None: HERE)
    with pytest.raises(ArtifactError) as err:
        runner_for(engine).load()
    line = str(err.value)
    assert "\n" not in line and line.startswith("cbhg.fp16.engine was built for TensorRT 10.8.0")
    assert "compute capability 9.0, NVIDIA H100 80GB HBM3" in line and "this machine has TensorRT 10.3.0" in line
    assert "not portable" in line and "edgeseq export cbhg --format tensorrt -p fp16" in line


def test_sidecar_checks_each_field():
    for key, other in (("tensorrt_version", "10.4.0"), ("compute_capability", "8.6"), ("gpu_name", "Other")):
        with pytest.raises(ArtifactError, match="not portable"):
            trt_format.validate_sidecar({**HERE, key: other}, HERE, "e.engine")
    trt_format.validate_sidecar(dict(HERE), HERE, "e.engine")  # a match passes


def test_malformed_sidecar_and_metadata(tmp_path):
    engine = _fake_engine(tmp_path)
    runner = runner_for(engine)
    assert detect_format(engine) is Format.TENSORRT and runner.format is Format.TENSORRT
    assert runner.metadata == {"edgeseq.model": "cbhg", "edgeseq.precision": "fp16"}
    (tmp_path / "cbhg.fp16.engine.json").write_text('{"schema": "other"}')
    with pytest.raises(ArtifactError, match="not an edgeseq engine sidecar"):
        runner_for(engine).load()
    with pytest.raises(UnsupportedError, match="CUDA GPU"):
        trt_format.TensorRTRunner(engine, device="cpu")


@no_tensorrt
def test_loading_an_engine_without_tensorrt_names_the_extra(tmp_path):
    with pytest.raises(MissingExtraError, match=r"pip install 'edgeseq\[tensorrt\]'"):
        runner_for(_fake_engine(tmp_path)).load()


# ---- CLI on a machine without TensorRT -------------------------------------------------------------------------------


@no_tensorrt
def test_cli_export_without_tensorrt_writes_the_plan_and_exits_0(run_cli, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("export", "cbhg-lite", "--format", "tensorrt", "--out", str(out), "--times", "7", "--batches", "1",
                   "-n", "2", "--shapes", "features=1x1x128:1x200x128:4x500x128")
    assert proc.returncode == 0, proc.stderr
    assert "no TensorRT engine was built here (the tensorrt package is not installed)" in proc.stdout
    assert "--maxShapes=features:4x500x128" in proc.stdout and "not run" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["cbhg-lite.fp32.trt-build.json", "cbhg-lite.fp32.trt.onnx",
                                                     "report.html", "report.json", "report.md"]
    report = json.loads((out / "report.json").read_text())
    # no parity claimed for an engine that was not built (on a GPU machine the torch-cuda reference rows appear)
    assert report["passed"] and all(p["runtime"].startswith("torch-") for p in report["parity"])
    assert {x["runtime"] for x in report["latency"]} <= {"torch-cpu", "torch-cuda"}
    assert report["artifacts"][0]["format"] == "tensorrt" and "trtexec" in report["artifacts"][0]["notes"][0]
    md = (out / "report.md").read_text()
    assert "| tensorrt | fp32 | (none here) | not run |" in md and "no TensorRT engine was built here" in md


@pytest.mark.parametrize(
    "argv, message",
    [
        (["export", "cbhg-lite", "--format", "tensorrt", "--shapes", "features=1x1x128"], "bad --shapes"),
        (["export", "cbhg-lite", "--shapes", "features=1x1x128:1x2x128:1x3x128"], "applies to TensorRT exports only"),
    ],
)
def test_cli_bad_tensorrt_input_is_one_line(run_cli, tmp_path, argv, message):
    out = tmp_path / "out"
    assert message in assert_one_line_error(run_cli(*argv, "--out", str(out)))
    assert not out.exists()


def test_cli_preflight(run_cli, tmp_path, lite_onnx):
    ok = run_cli("preflight", lite_onnx.path, "--json", str(tmp_path / "p.json"))
    assert ok.returncode == 0 and ok.stdout.startswith("OK cbhg-lite.fp32.onnx"), ok.stderr
    assert json.loads((tmp_path / "p.json").read_text())["ok"] is True
    bad = tmp_path / "q.onnx"
    onnx.save(_qdq(np.array(128, dtype=np.uint8)), bad)
    proc = run_cli("preflight", str(bad))
    assert proc.returncode == 1 and proc.stdout.startswith("UNSUPPORTED q.onnx")
    assert "- q (QuantizeLinear)" in proc.stdout
    assert "does not exist" in assert_one_line_error(run_cli("preflight", str(tmp_path / "none.onnx")))


@no_tensorrt
def test_cli_check_of_an_engine_without_tensorrt(run_cli, tmp_path):
    line = assert_one_line_error(run_cli("check", str(_fake_engine(tmp_path))))
    assert "pip install 'edgeseq[tensorrt]'" in line


# ---- with TensorRT and a GPU: real engine tests (skipped on this project's machines) --------------------------------


@pytest.fixture(scope="module")
def lite_engines(tmp_path_factory):
    out = tmp_path_factory.mktemp("engines")
    arts = {p: edgeseq.export("cbhg-lite", "tensorrt", out_dir=out, precision=p) for p in ("fp32", "fp16")}
    return out, arts


@pytest.mark.tensorrt
@needs_engine
def test_engine_build_writes_engine_sidecar_plan_and_timing_cache(lite_engines):
    out, arts = lite_engines
    art = arts["fp32"]
    assert art.path.endswith("cbhg-lite.fp32.engine") and detect_format(art.path) is Format.TENSORRT
    sidecar = trt_format.read_sidecar(art.path)
    assert sidecar == {**sidecar, **trt_format.this_machine()} and sidecar["model"] == "cbhg-lite"
    assert sidecar["profile"]["features"]["max"] == [16, 1000, 128] and sidecar["engine_sha256"] == art.sha256
    assert json.loads((out / "cbhg-lite.fp32.trt-build.json").read_text())["engine_built"] is True
    assert (out / trt_format.TIMING_CACHE_NAME).stat().st_size > 0


@pytest.mark.tensorrt
@needs_engine
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_matches_the_pytorch_original(lite_engines, precision):
    _, arts = lite_engines
    result = edgeseq.check(arts[precision].path, times=(1, 7, 200, 1000), batches=(1, 3))
    assert result.passed, result.failures
    assert result.runtime == "tensorrt-cuda" and result.precision == precision


@pytest.mark.tensorrt
@needs_engine
def test_engine_sets_shapes_per_call_and_refuses_shapes_outside_its_profile(lite_engines):
    _, arts = lite_engines
    spec = edgeseq.get_model("cbhg-lite")
    with edgeseq.load(arts["fp32"].path) as runner:
        for batch, time in ((1, 50), (3, 7), (1, 50)):
            assert runner.infer(spec.example_inputs(batch=batch, time=time))["encoded"].shape == (batch, time, 128)
        with pytest.raises(InputError, match="outside this engine's profile"):
            runner.infer(spec.example_inputs(batch=1, time=1001))


@pytest.mark.tensorrt
@needs_engine
def test_matrix_with_tensorrt_has_parity_rows(tmp_path):
    report = edgeseq.run_matrix("cbhg-lite", ["tensorrt"], out_dir=tmp_path,
                                options=edgeseq.MatrixOptions(times=(7, 50), batches=(1,), iterations=3))
    assert report.passed and [p.runtime for p in report.parity if p.artifact.endswith(".engine")] == ["tensorrt-cuda"]


@pytest.mark.tensorrt
@needs_tensorrt
def test_tensorrt_bindings_have_the_api_this_module_uses():
    import tensorrt as trt

    for name in ("Builder", "OnnxParser", "Runtime", "ILogger", "TensorIOMode", "MemoryPoolType"):
        assert hasattr(trt, name), name
    assert hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED") and hasattr(trt.BuilderFlag, "TF32")
    for method in ("set_input_shape", "set_tensor_address", "execute_async_v3", "get_tensor_shape"):
        assert hasattr(trt.IExecutionContext, method), method


@no_tensorrt
def test_jetson_style_recipe_claims_no_parity_for_the_plan(tmp_path):
    from edgeseq.recipe import load_recipe, run_recipe

    recipe = tmp_path / "jetson.toml"
    recipe.write_text('name = "j"\nmodel = "cbhg-lite"\nformats = ["tensorrt"]\nprecisions = ["fp16"]\n'
                      'devices = ["jetson-orin"]\nout = "j"\n[parity]\ntimes = [7]\nbatches = [1]\n'
                      '[latency]\ntime = 50\niterations = 2\n[[budgets]]\ndevice = "jetson-orin"\nprecision = "fp16"\n'
                      'p50_ms = 2.0\n')
    manifest = run_recipe(load_recipe(recipe), tmp_path / "out")
    (art,) = [a for a in manifest["artifacts"] if a["precision"] == "fp16"]  # fp32 is built too, as the baseline
    assert art["file"] == "cbhg-lite.fp16.trt.onnx" and art["parity_passed"] is None
    assert art["notes"][0].startswith(trt_format.NO_ENGINE)
    assert [(b["runtime"], b["status"]) for b in manifest["budgets"]] == [("tensorrt-cuda", "not-measured")]
    assert (tmp_path / "out" / "j" / "cbhg-lite.fp16.trt-build.json").is_file()


def test_int8_plan_uses_symmetric_qdq_that_passes_preflight(tmp_path):
    """TensorRT reads signed, zero-point-0 int8 Q/DQ: the int8 ONNX made for it must pass the parser's rules."""
    art = trt_format.export(edgeseq.get_model("cbhg-lite"), tmp_path / "cbhg-lite.int8-static.engine",
                            precision="int8-static", options=TensorRTOptions(engine=EngineBuild.NEVER))
    onnx_path = tmp_path / "cbhg-lite.int8-static.trt.onnx"
    report = trt_format.preflight(onnx_path)
    assert report.ok and report.quantized, report.summary()
    assert "--stronglyTyped" in art.notes[0]
    assert edgeseq.check(onnx_path, "cbhg-lite", times=(7, 50), batches=(1,)).passed
