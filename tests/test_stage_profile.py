"""`edgeseq profile ARTIFACT --stages`: per-stage time in ONNX Runtime's profiler and PyTorch eager, FLOP shares."""

import json

import onnx
import pytest
from onnx import TensorProto, helper

from edgeseq.errors import InputError, UnsupportedError
from edgeseq.stage_profile import OTHER, profile_stages, stage_of

from conftest import assert_one_line_error


def test_node_names_map_to_top_level_stages():
    stages = ["bank", "pool", "gru"]
    assert stage_of("/bank/convs.0/conv/Conv", stages) == "bank"
    assert stage_of("/gru/rnn/GRU", stages) == "gru"
    assert stage_of("/Transpose", stages) == OTHER  # top-level glue
    assert stage_of("fused_Conv_Relu_12", stages) == OTHER  # an optimizer's node with no scope


def test_every_stage_of_cbhg_lite_is_timed_in_both_runtimes(lite_onnx):
    result = profile_stages(lite_onnx.path, batch=1, time=50, threads=1, warmup=1, iterations=3)
    assert result.model == "cbhg-lite" and result.time == 50 and result.iterations == 3
    assert result.runtime == "onnxruntime-cpu"
    names = [r.stage for r in result.rows]
    assert names[-1] == OTHER and {"bank", "projections", "highway", "gru"} <= set(names)
    by = {r.stage: r for r in result.rows}
    # the GRU and the conv bank do work in both runtimes; shares add up; FLOPs are the model's, not timings
    assert by["gru"].onnxruntime_ms > 0 and by["gru"].eager_ms > 0 and by["bank"].onnxruntime_ms > 0
    assert sum(r.onnxruntime_share_pct for r in result.rows) == pytest.approx(100.0)
    assert sum(r.eager_share_pct for r in result.rows) == pytest.approx(100.0)
    assert sum(r.flops_share_pct for r in result.rows) == pytest.approx(100.0, abs=0.5)
    assert by[OTHER].flops_share_pct == 0.0
    assert "GRU" in result.onnxruntime_op_types_ms and "Conv" in "".join(result.onnxruntime_op_types_ms)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["rows"][0]["speedup"] == pytest.approx(result.rows[0].speedup)
    assert data["onnxruntime_total_ms"] == pytest.approx(result.onnxruntime_total_ms)


def test_stages_need_onnx_and_a_model(tmp_path):
    tflite = tmp_path / "m.tflite"
    tflite.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 64)
    with pytest.raises(UnsupportedError, match="benchmark_model has --enable_op_profiling"):
        profile_stages(tflite)
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), foreign)
    with pytest.raises(InputError, match="--model NAME"):
        profile_stages(foreign)
    with pytest.raises(InputError, match="does not exist"):
        profile_stages(tmp_path / "nope.onnx")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"iterations": "3"}, "iterations must be an integer >= 1, got '3'"),
    ({"warmup": -1}, "warmup must be an integer >= 0, got -1"),
    ({"device": 3}, "device must be cpu, cuda, tensorrt, a device profile name or .toml path"),
])
def test_stage_arguments_are_checked_by_the_api_rules(lite_onnx, kwargs, message):
    """The same rules (and one-line errors) as profile() and measure(), not a TypeError from a comparison."""
    with pytest.raises(InputError, match=message):
        profile_stages(lite_onnx.path, **kwargs)


def test_a_profile_path_given_as_a_path_object_is_read_as_a_profile(lite_onnx, tmp_path):
    from pathlib import Path

    with pytest.raises(InputError, match="nope.toml' does not exist or is not a file"):
        profile_stages(lite_onnx.path, device=Path(tmp_path / "nope.toml"))


def test_cli_profile_stages(run_cli, lite_onnx, tmp_path):
    proc = run_cli("profile", lite_onnx.path, "--stages", "--time", "50", "-n", "3", "--warmup", "1",
                   "--json", str(tmp_path / "s.json"))
    assert proc.returncode == 0, proc.stderr
    assert "where the time goes: cbhg-lite on onnxruntime-cpu, batch=1 T=50" in proc.stdout
    assert "│ gru" in proc.stdout and "onnxruntime by op type: " in proc.stdout
    assert json.loads((tmp_path / "s.json").read_text())["model"] == "cbhg-lite"
    line = assert_one_line_error(run_cli("profile", lite_onnx.path, "--stages", "--shape", "features=1x9x128"))
    assert "drop --shape" in line
    line = assert_one_line_error(run_cli("profile", lite_onnx.path, "--stages", "--device", "cuda"))
    assert "not on 'cuda'" in line
