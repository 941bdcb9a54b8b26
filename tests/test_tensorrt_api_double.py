"""TensorRT's build and run code paths against a test double of its Python API (tests/doubles/fake_tensorrt.py):
the builder flags, the strongly typed int8 network, the parser's refusals, the timing cache and the sidecar, on a
machine where TensorRT cannot be installed. The runner's buffers and stream need a CUDA GPU as well."""

import json

import numpy as np
import pytest
import torch
from test_tensorrt import _linear_qdq

import edgeseq
from edgeseq.errors import ArtifactError, ExportError, InputError, UnsupportedError
from edgeseq.formats import tensorrt as trt_format
from edgeseq.formats.tensorrt import TensorRTOptions

GPU_HERE = {"tensorrt_version": "10.99.0+fake", "gpu_name": "Fake GPU", "compute_capability": "9.0"}


@pytest.fixture
def fake_trt(monkeypatch):
    from doubles import fake_tensorrt

    monkeypatch.setitem(__import__("sys").modules, "tensorrt", fake_tensorrt)
    monkeypatch.setattr("edgeseq.formats.tensorrt.build.this_machine", lambda device=None: dict(GPU_HERE))
    monkeypatch.setattr("edgeseq.formats.tensorrt.build.can_build", lambda: (True, ""))
    fake_tensorrt.CALLS.clear()
    fake_tensorrt.REJECT.clear()
    return fake_tensorrt


def test_build_path_with_the_api_double(fake_trt, tmp_path):
    art = edgeseq.export("cbhg-lite", "tensorrt", out_dir=tmp_path, precision="fp16",
                         shapes=["features=1x1x128:2x100x128:4x300x128"])
    assert art.path.endswith("cbhg-lite.fp16.engine") and art.exporter.startswith("TensorRT 10.99.0+fake builder")
    assert ("set_flag", "FP16") in fake_trt.CALLS and ("create_network", 0) in fake_trt.CALLS
    sidecar = trt_format.read_sidecar(art.path)
    assert {k: sidecar[k] for k in GPU_HERE} == GPU_HERE and sidecar["precision"] == "fp16"
    assert sidecar["profile"]["features"] == {"min": [1, 1, 128], "opt": [2, 100, 128], "max": [4, 300, 128]}
    plan = json.loads((tmp_path / "cbhg-lite.fp16.trt-build.json").read_text())
    assert plan["engine_built"] is True and plan["why_no_engine"] is None
    cache = tmp_path / trt_format.TIMING_CACHE_NAME
    assert cache.read_bytes() == b"+timed"
    trt_format.export(edgeseq.get_model("cbhg-lite"), tmp_path / "cbhg-lite.fp32.engine")  # reuses the cache
    assert ("create_timing_cache", b"+timed") in fake_trt.CALLS and ("clear_flag", "TF32") in fake_trt.CALLS
    assert cache.read_bytes() == b"+timed+timed"


def test_int8_builds_a_strongly_typed_network(fake_trt, tmp_path):
    spec = edgeseq.ModelSpec.from_module(torch.nn.Linear(4, 4, bias=False), torch.randn(2, 9, 4), ["x"], ["y"],
                                         {"x": {0: "batch", 1: "time"}, "y": {0: "batch", 1: "time"}})
    trt_format.export(spec, tmp_path / "lin.engine", precision="int8-static",
                      options=TensorRTOptions(onnx_path=_linear_qdq(tmp_path / "q.onnx"), workspace_mib=256))
    assert ("create_network", 2) in fake_trt.CALLS and ("set_flag", "INT8") not in fake_trt.CALLS
    assert ("set_memory_pool_limit", "WORKSPACE", 256 << 20) in fake_trt.CALLS


def test_parser_and_tensorrt11_refusals_leave_nothing(fake_trt, monkeypatch, tmp_path):
    fake_trt.REJECT.add("GRU")
    with pytest.raises(ExportError, match=r"parser rejected cbhg-lite.fp32.trt.onnx: /gru/rnn/GRU GRU: no importer"):
        edgeseq.export("cbhg-lite", "tensorrt", out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
    fake_trt.REJECT.clear()
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", fake_trt.without_weak_typing())
    with pytest.raises(UnsupportedError, match="11.1.0.* has no FP16 builder flag"):
        edgeseq.export("cbhg-lite", "tensorrt", out_dir=tmp_path, precision="fp16")
    assert list(tmp_path.iterdir()) == []


def test_engine_that_does_not_deserialize_is_one_line(fake_trt, tmp_path):
    engine = tmp_path / "x.engine"
    engine.write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="cannot load x.engine .magic tag does not match.*no sidecar"):
        trt_format.TensorRTRunner(engine).load()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch sees none here)")
def test_runner_buffers_shapes_and_stream_with_the_api_double(fake_trt, tmp_path):
    from edgeseq.formats.onnx import OnnxOptions

    spec = edgeseq.get_model("cbhg-lite")
    options = TensorRTOptions(onnx=OnnxOptions(simplify=False),  # runs where onnxslim is not installed (GPU box)
                              shapes=trt_format.parse_shape_profile(["features=1x1x128:1x50x128:4x300x128"]))
    art = trt_format.export(spec, tmp_path / "cbhg-lite.fp32.engine", options=options)
    with edgeseq.load(art.path) as runner:  # the double's engine copies its input buffer to its output buffer
        assert runner.runtime == "tensorrt-cuda" and runner.inputs[0].shape == ("batch", "time", 128)
        for batch, time in ((1, 50), (3, 7), (4, 300), (1, 1)):
            feed = spec.example_inputs(batch=batch, time=time)
            np.testing.assert_array_equal(runner.infer(feed)["encoded"], feed["features"])
        with pytest.raises(InputError, match=r"outside this engine's profile 1..4x1..300x128"):
            runner.infer(spec.example_inputs(batch=1, time=301))
        assert runner.metadata["edgeseq.model"] == "cbhg-lite"
        # latency: CUDA events on the engine's stream around execute_async_v3, inputs bound once
        from edgeseq.latency import measure

        result = measure(runner, spec.example_inputs(batch=1, time=50), warmup=2, iterations=6)
        assert result.iterations == 6 and result.p50_ms > 0
        assert result.note.startswith("device time from CUDA events on the engine's stream")
        assert "end to end with host copies p50" in result.note
