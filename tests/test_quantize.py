"""Quantization: QuantConfig, calibration data, and ONNX fp16 / int8 artifacts that are smaller and still match."""

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

import edgeseq
from edgeseq.errors import InputError
from edgeseq.formats import get as get_format
from edgeseq.quantize import (
    Approach,
    CalibrationMethod,
    GruExport,
    QuantConfig,
    QuantDtype,
    calibration_feeds,
    load_calibration_dir,
)

ONNX = get_format("onnx")  # the ONNX format: its quantization defaults

DERIVED = ("fp16", "int8-dynamic", "int8-static")
TIMES, BATCHES = (7, 50), (1, 3)


@pytest.fixture(scope="module")
def lite_all(tmp_path_factory, lite_onnx):
    """The three derived cbhg-lite artifacts, each from the shared fp32 export (about a second each)."""
    out = tmp_path_factory.mktemp("lite-quant")
    return {p: edgeseq.export("cbhg-lite", "onnx", out_dir=out, precision=p, parent=lite_onnx) for p in DERIVED}


def _meta(path):
    return {p.key: p.value for p in onnx.load(path).metadata_props}


# ---- QuantConfig ----------------------------------------------------------------------------------------------------


def test_defaults_are_per_format_and_precision():
    dyn, static = ONNX.default_quant("int8-dynamic"), ONNX.default_quant("int8-static")
    assert dyn.approach is Approach.INT8_DYNAMIC and static.approach is Approach.INT8_STATIC
    assert dyn.weight_type is QuantDtype.UINT8  # signed weights make ORT's ConvInteger several times slower
    assert static.op_types == ("Conv",) and static.calibration_method is CalibrationMethod.MINMAX
    assert ONNX.default_quant("fp16").approach is Approach.FP16
    with pytest.raises(edgeseq.EdgeseqError, match="fp32"):
        ONNX.default_quant("fp32")


def test_overrides_parse_and_round_trip():
    config = ONNX.quant_config("int8-static", ["weight_type=uint8", "per_channel=false", "op_types=Conv,MatMul",
                                                     "calibration_method=percentile", "gru=hoisted"])
    assert config.weight_type is QuantDtype.UINT8 and config.per_channel is False
    assert config.op_types == ("Conv", "MatMul") and config.gru is GruExport.HOISTED
    assert QuantConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert ONNX.quant_config("int8-static", {"per_channel": "no"}).per_channel is False
    assert "int8-static qdq w:uint8" in config.label()


@pytest.mark.parametrize("items, message", [
    (["nope=1"], "unknown quantization setting"),
    (["weight_type=int4"], "unknown quantdtype 'int4'"),
    (["per_channel=maybe"], "true or false"),
    (["weight_type"], "expected KEY=VALUE"),
    (["calibration_samples=0"], ">= 1"),
])
def test_bad_overrides_are_one_line_errors(items, message):
    with pytest.raises(edgeseq.EdgeseqError, match=message):
        ONNX.quant_config("int8-static", items)


# ---- calibration data -----------------------------------------------------------------------------------------------


def test_calibration_dir_loads_with_or_without_batch_axis(tmp_path):
    spec = edgeseq.get_model("cbhg-lite")
    np.save(tmp_path / "a.npy", np.random.default_rng(0).standard_normal((40, 128)))  # float64, no batch axis
    np.save(tmp_path / "b.npy", np.zeros((1, 9, 128), np.float32))
    (tmp_path / "notes.txt").write_text("ignored")
    feeds = load_calibration_dir(tmp_path, spec)
    assert [f["features"].shape for f in feeds] == [(1, 40, 128), (1, 9, 128)]
    assert all(f["features"].dtype == np.float32 for f in feeds)


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "holds no .npy files"),
    (lambda d: np.save(d / "x.npy", np.zeros((20, 80), np.float32)), r"expected \(batch x time x 128\)"),
    (lambda d: np.save(d / "x.npy", np.zeros((20, 128), np.int16)), "must be floating point"),
    (lambda d: np.save(d / "x.npy", np.full((20, 128), np.nan, np.float32)), "NaN or Inf"),
    (lambda d: np.save(d / "x.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True), "not a readable .npy"),
    (lambda d: (d / "x.npy").write_bytes(b"garbage"), "not a readable .npy"),
])
def test_bad_calibration_dirs_are_one_line_input_errors(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(InputError, match=message) as info:
        load_calibration_dir(tmp_path, edgeseq.get_model("cbhg-lite"))
    assert "\n" not in str(info.value)


def test_calibration_path_must_be_a_directory(tmp_path):
    spec = edgeseq.get_model("cbhg-lite")
    with pytest.raises(InputError, match="does not exist"):
        load_calibration_dir(tmp_path / "missing", spec)
    (tmp_path / "f.npy").write_bytes(b"")
    with pytest.raises(InputError, match="not a directory"):
        load_calibration_dir(tmp_path / "f.npy", spec)


def test_multi_input_calibration_files_are_grouped_by_sample(tmp_path):
    class Two(torch.nn.Module):
        def forward(self, a, b):
            return a + b

    spec = edgeseq.ModelSpec.from_module(Two(), (torch.zeros(1, 5, 3), torch.zeros(1, 5, 3)), ["a", "b"], ["y"],
                                         {"a": {1: "time"}, "b": {1: "time"}, "y": {1: "time"}})
    for name in ("a", "b"):
        np.save(tmp_path / f"{name}.s1.npy", np.ones((5, 3), np.float32))
    assert len(load_calibration_dir(tmp_path, spec)) == 1
    (tmp_path / "a.s2.npy").write_bytes((tmp_path / "a.s1.npy").read_bytes())
    with pytest.raises(InputError, match="lacks input"):
        load_calibration_dir(tmp_path, spec)


def test_default_calibration_is_the_models_real_speech():
    spec = edgeseq.get_model("cbhg-lite")
    feeds = calibration_feeds(spec, ONNX.default_quant("int8-static").replace(calibration_samples=3))
    assert len(feeds) == 3 and feeds[0]["features"].shape == (1, 200, 128)
    assert not np.allclose(feeds[0]["features"], feeds[1]["features"])


# ---- ONNX artifacts -------------------------------------------------------------------------------------------------


def test_derived_artifacts_are_smaller(lite_all, lite_onnx):
    fp32 = lite_onnx.size_bytes
    assert lite_all["fp16"].size_bytes < 0.55 * fp32
    assert lite_all["int8-dynamic"].size_bytes < 0.35 * fp32
    assert lite_all["int8-static"].size_bytes < 0.35 * fp32


@pytest.mark.parametrize("precision", DERIVED)
def test_derived_artifact_records_parent_precision_and_config(lite_all, lite_onnx, precision):
    art = lite_all[precision]
    assert art.parent == lite_onnx.sha256 and art.precision == precision
    meta = _meta(art.path)
    assert meta["edgeseq.precision"] == precision and meta["edgeseq.parent_sha256"] == lite_onnx.sha256
    assert meta["edgeseq.model"] == "cbhg-lite" and meta["edgeseq.weights_sha256"] == lite_onnx.weights_sha256
    assert json.loads(meta["edgeseq.quant"])["approach"] == precision
    from edgeseq.artifact import sha256_file

    assert art.sha256 == sha256_file(art.path)


@pytest.mark.parametrize("precision", DERIVED)
def test_derived_artifacts_pass_their_tolerance(lite_all, precision):
    result = edgeseq.check(lite_all[precision].path, times=TIMES, batches=BATCHES)  # precision read from metadata
    assert result.precision == precision
    assert result.passed, result.failures
    assert result.worst.rel_l2 > 1e-5  # really reduced precision, not the fp32 graph renamed


def test_int8_graphs_say_what_stayed_float(lite_all):
    static = lite_all["int8-static"].quantization
    assert static["int8_ops"]["Conv"] == 20 and "Conv" not in static["float_ops"]
    assert static["float_ops"]["GRU"] == 1  # ORT has no int8 GRU
    assert static["weight_only_ops"] == {"GRU": 1, "MatMul": 3}
    dynamic = lite_all["int8-dynamic"].quantization
    assert dynamic["int8_ops"]["ConvInteger"] == 20 and dynamic["float_ops"]["GRU"] == 1
    fp16 = lite_all["fp16"].quantization
    assert fp16["fp16_ops"]["Conv"] == 20 and set(fp16["float_ops"]) <= {"Cast", "Max"}  # the pool's Max after its -inf Pad stays fp32


def test_derived_exports_are_reproducible(lite_all, lite_onnx, tmp_path):
    again = edgeseq.export("cbhg-lite", "onnx", out_dir=tmp_path, precision="int8-static", parent=lite_onnx)
    assert again.sha256 == lite_all["int8-static"].sha256


def test_export_without_parent_derives_from_a_fresh_fp32(tmp_path, lite_onnx):
    art = edgeseq.export("cbhg-lite", "onnx", out_dir=tmp_path, precision="fp16")
    assert art.parent == lite_onnx.sha256  # the fp32 export is byte-identical
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cbhg-lite.fp16.onnx"]


def test_user_calibration_data_and_directory(tmp_path, lite_onnx):
    spec = edgeseq.get_model("cbhg-lite")
    feeds = [spec.example_inputs(1, 60, "speech", seed=s) for s in range(3)]
    art = edgeseq.export(spec, "onnx", out_dir=tmp_path / "a", precision="int8-static", calibration_data=iter(feeds),
                         parent=lite_onnx)
    assert art.quantization["config"]["calibration"] == "user"
    assert edgeseq.check(art.path, times=(50,), batches=(1,)).passed
    calib = tmp_path / "calib"
    calib.mkdir()
    for i, f in enumerate(feeds):
        np.save(calib / f"{i}.npy", f["features"][0])
    art2 = edgeseq.export(spec, "onnx", out_dir=tmp_path / "b", precision="int8-static", calibration=calib,
                          parent=lite_onnx)
    assert art2.quantization["config"]["calibration"] == str(calib)
    feed = spec.example_inputs(1, 30)
    with edgeseq.load(art) as a, edgeseq.load(art2) as b:  # the same data through either door: the same model
        np.testing.assert_array_equal(a.infer(feed)["encoded"], b.infer(feed)["encoded"])


def _tensors(path):
    model = onnx.load(path)
    return model, {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def _conv_weight_dequantizers(path):
    """(scale, zero point, axis) of each DequantizeLinear that feeds a Conv its weights, read from the file."""
    model, inits = _tensors(path)
    conv_inputs = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    out = []
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear" and n.output[0] in conv_inputs and n.input[0] in inits:
            axis = next((a.i for a in n.attribute if a.name == "axis"), None)
            out.append((inits[n.input[1]], inits[n.input[2]], axis))
    return out


def _input_scale(path):
    """The activation scale of the first QuantizeLinear (the model's input, transposed for the convolutions)."""
    model, inits = _tensors(path)
    first = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    return float(inits[first.input[1]]), inits[first.input[2]].dtype


@pytest.mark.parametrize("per_channel, activation", [(True, "uint8"), (False, "int8")])
def test_static_quant_settings_reach_the_artifacts_tensors(tmp_path, lite_onnx, per_channel, activation):
    art = edgeseq.export("cbhg-lite", "onnx", out_dir=tmp_path, precision="int8-static", parent=lite_onnx,
                         quant={"per_channel": per_channel, "activation_type": activation, "weight_type": "int8"})
    dequant = _conv_weight_dequantizers(art.path)
    assert len(dequant) == 20  # every Conv of cbhg-lite takes int8 weights
    for scale, zero_point, axis in dequant:
        assert zero_point.dtype == np.int8 and not zero_point.any()  # symmetric int8 weights
        if per_channel:  # one scale per output channel, along axis 0
            assert scale.ndim == 1 and scale.size > 1 and axis == 0 and len(np.unique(scale)) > 1
        else:
            assert scale.size == 1
    assert _input_scale(art.path)[1] == np.dtype(activation)
    assert json.loads(_meta(art.path)["edgeseq.quant"])["per_channel"] is per_channel


@pytest.mark.parametrize("weight_type", ["uint8", "int8"])
def test_dynamic_weight_type_reaches_the_artifacts_tensors(tmp_path, lite_onnx, weight_type):
    art = edgeseq.export("cbhg-lite", "onnx", out_dir=tmp_path, precision="int8-dynamic", parent=lite_onnx,
                         quant={"weight_type": weight_type})
    model, inits = _tensors(art.path)
    convs = [n for n in model.graph.node if n.op_type == "ConvInteger"]
    assert len(convs) == 20 and {inits[n.input[1]].dtype for n in convs} == {np.dtype(weight_type)}


def test_user_calibration_data_sets_the_activation_ranges(tmp_path, lite_onnx):
    """The calibrator sees the user's feeds, not the model's own: data three times as loud gives input scales three
    times as large (checked on the file, not through int8 parity, which depends on the CPU's int8 kernels)."""
    spec = edgeseq.get_model("cbhg-lite")
    feeds = [spec.example_inputs(1, 60, "speech", seed=s) for s in range(3)]
    scales = []
    for gain in (1.0, 3.0):
        data = [{name: value * gain for name, value in feed.items()} for feed in feeds]
        art = edgeseq.export(spec, "onnx", out_dir=tmp_path / str(gain), precision="int8-static", parent=lite_onnx,
                             calibration_data=data, quant={"calibration_method": "minmax"})
        scales.append(_input_scale(art.path)[0])
    assert scales[1] / scales[0] == pytest.approx(3.0, rel=0.02)
    largest = max(float(np.abs(f["features"]).max()) for f in feeds)
    assert scales[0] <= largest / 100  # the range of these feeds, not a wider one (uint8: ~largest / 127.5 or less)


def test_bad_calibration_data_writes_nothing(tmp_path, lite_onnx):
    with pytest.raises(InputError, match=r"calibration_data\[0\]: input 'features' has shape \[5, 7\]"):
        edgeseq.export("cbhg-lite", "onnx", out_dir=tmp_path, precision="int8-static", parent=lite_onnx,
                       calibration_data=[{"features": np.zeros((5, 7), np.float32)}])
    with pytest.raises(InputError, match="apply to fp16 / int8"):
        edgeseq.export("cbhg-lite", "onnx", out_dir=tmp_path, quant={"per_channel": False})
    assert list(tmp_path.iterdir()) == []


# ---- graph rewrites -------------------------------------------------------------------------------------------------


def _max_rel_l2(path, spec, times=TIMES, batches=BATCHES):
    return edgeseq.check(path, spec, precision="int8-static", times=times, batches=batches).worst.rel_l2


def test_hoisted_gru_is_exact_in_fp32(lite_onnx, tmp_path):
    """The hoisted input projection changes the graph, not the numbers: fp32 parity as before."""
    from edgeseq.formats.onnx import op_census
    from edgeseq.formats.onnx.weights import hoist_gru_input_projection

    model = hoist_gru_input_projection(onnx.load(lite_onnx.path))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("GRU") == 2 and "EyeLike" in ops  # forward + reverse; identity input weights built at load
    onnx.checker.check_model(model)
    path = tmp_path / "hoisted.onnx"
    onnx.save(model, str(path))
    assert path.stat().st_size < lite_onnx.size_bytes * 1.01  # the identity is not stored
    result = edgeseq.check(str(path), "cbhg-lite", precision="fp32", times=(1, 7, 50), batches=BATCHES)
    assert result.passed and result.worst.rel_l2 < 1e-5, result.failures
    assert op_census(model)["float_ops"]["MatMul"] == 4


def test_hoisted_gru_projection_is_quantized(tmp_path, lite_onnx):
    art = edgeseq.export("cbhg-lite", "onnx", out_dir=tmp_path, precision="int8-static", parent=lite_onnx,
                         quant={"gru": "hoisted", "weight_only": ()})
    census = art.quantization
    assert census["float_ops"]["GRU"] == 2 and census["int8_ops"].get("MatMul") == 1
    assert _max_rel_l2(art.path, "cbhg-lite") < 2e-2


def test_weight_only_storage_shrinks_and_stays_close(lite_onnx, tmp_path):
    from edgeseq.formats.onnx.weights import store_weights_int8

    model = store_weights_int8(onnx.load(lite_onnx.path), ("GRU", "MatMul"))
    path = tmp_path / "w8.onnx"
    onnx.save(model, str(path))
    assert path.stat().st_size < lite_onnx.size_bytes - 150_000  # GRU (196 kB) + MatMul (65 kB) weights at 1/4
    assert 1e-5 < _max_rel_l2(str(path), "cbhg-lite") < 1e-2


# ---- PyTorch's own int8 ---------------------------------------------------------------------------------------------


def test_torch_int8_reference_quantizes_linear_and_gru():
    from edgeseq.formats.torch import TorchRunner
    from edgeseq.parity import Tolerance, compare

    spec = edgeseq.get_model("cbhg-lite")
    with TorchRunner(spec) as ref, TorchRunner(spec, precision="int8-dynamic") as q8:
        assert q8.runtime == "torch-cpu-int8"
        assert isinstance(q8.module.gru.rnn, torch.ao.nn.quantized.dynamic.GRU)
        feed = spec.example_inputs(1, 50)
        e = compare("encoded", ref.infer(feed)["encoded"], q8.infer(feed)["encoded"], Tolerance(1.0))
    assert 1e-4 < e.rel_l2 < 5e-2


# ---- the matrix and its report --------------------------------------------------------------------------------------


def test_cli_int8_dynamic_builds_the_parent_too(run_cli, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("export", "cbhg-lite", "-p", "int8-dynamic", "--out", str(out), "--times", "7", "--batches", "1",
                   "-n", "3")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["cbhg-lite.fp32.onnx", "cbhg-lite.int8-dynamic.onnx",
                                                    "report.html", "report.json", "report.md"]
    report = json.loads((out / "report.json").read_text())
    (q,) = report["quantization"]
    assert q["precision"] == "int8-dynamic" and q["size_ratio"] < 0.35 and q["latency_ratio"] > 0
    assert q["rel_l2"] < 1e-2 and "GRU" in q["float_ops"] and q["torch_int8_rel_l2"] > 0
    assert report["references"][0]["runtime"] == "torch-cpu-int8"
    fp32, int8 = report["artifacts"]
    assert int8["parent"] == fp32["sha256"]
    assert "quantized vs fp32" in proc.stdout


def test_cli_all_runs_the_whole_matrix(run_cli, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("export", "cbhg-lite", "-p", "all", "--out", str(out), "--times", "7", "--batches", "1",
                   "-n", "3")  # the whole matrix on one case: the derived artifacts' parity is tested on a sweep above
    assert proc.returncode == 0, proc.stderr + proc.stdout
    from edgeseq.report import load_report

    report = load_report(out / "report.json")
    assert [a["precision"] for a in report["artifacts"]] == ["fp32", "fp16", "int8-dynamic", "int8-static"]
    assert all(p["passed"] for p in report["parity"]) and len(report["quantization"]) == 3
    md = (out / "report.md").read_text()
    assert "## Quantized artifacts against fp32" in md and "torch-cpu-int8" in md


def test_cli_bad_calibration_dir_is_one_line(run_cli, tmp_path):
    from conftest import assert_one_line_error

    out = tmp_path / "out"
    bad = tmp_path / "calib"
    bad.mkdir()
    np.save(bad / "x.npy", np.zeros((10, 80), np.float32))
    line = assert_one_line_error(run_cli("export", "cbhg-lite", "-p", "int8-static", "--calibration", str(bad),
                                         "--out", str(out)))
    assert "has shape [10, 80], expected (batch x time x 128)" in line
    line = assert_one_line_error(run_cli("export", "cbhg-lite", "--calibration", str(bad), "--out", str(out)))
    assert "int8-static" in line
    assert not out.exists()


# ---- the larger model, full sweep -----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("precision", DERIVED)
def test_cbhg_derived_artifacts_hold_at_every_length(tmp_path, precision):
    art = edgeseq.export("cbhg", "onnx", out_dir=tmp_path, precision=precision)
    result = edgeseq.check(art.path, times=(1, 7, 50, 200, 1000), batches=(1, 3))
    assert result.passed, result.failures


def test_a_model_onnxruntime_cannot_load_is_an_export_error(tmp_path):
    from edgeseq.errors import ExportError
    from edgeseq.formats.onnx.derive import _probe_load_isolated

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    with pytest.raises(ExportError, match="cannot load the int8-static model"):
        _probe_load_isolated(bad, edgeseq.Precision.INT8_STATIC)


def _documented_tolerances() -> dict[str, float]:
    """docs/tolerances.md's table under "## The defaults": {precision: tolerance} from its first two columns."""
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "tolerances.md").read_text()
    section = text.split("\n## The defaults\n", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip(" `") for c in ln.strip().strip("|").split("|")] for ln in section.splitlines()
            if ln.startswith("|")]
    assert rows[0][:2] == ["precision", "tolerance"], rows[0]
    return {r[0]: float(r[1]) for r in rows[2:]}  # rows[1]: |---|---|


def test_tolerance_table_is_the_documented_one():
    from edgeseq.parity import DEFAULT_TOLERANCES

    code = {p: t.rel_l2 for p, t in DEFAULT_TOLERANCES.by_precision.items()}
    assert code == _documented_tolerances()
    assert set(code) == {"fp32", "fp16", "int8-dynamic", "int8-static"}


@pytest.mark.slow
def test_postnet_fp16_loads_despite_the_onnxruntime_transpose_crash(tmp_path):
    """ORT 1.32 segfaults optimizing an fp16 Transpose -> MatMul (postnet's output linear): it stays fp32."""
    art = edgeseq.export("cbhg-postnet", "onnx", out_dir=tmp_path, precision="fp16")
    assert art.quantization["float_ops"].get("Transpose") == 1
    assert edgeseq.check(art.path, times=(7, 200), batches=(1, 3)).passed
