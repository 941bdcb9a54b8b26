"""The ONNX Runtime runner: any ONNX model, a strict feed contract, clear errors for bad files."""

import threading

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import edgeseq
from edgeseq.errors import ArtifactError, InputError, UnsupportedError


@pytest.fixture(scope="module")
def foreign_onnx(tmp_path_factory):
    """A model edgeseq did not make: y = relu(x @ W) with a free batch and a free 'seq' dim, no metadata."""
    w = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        "foreign",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "seq", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "seq", 3])],
        [helper.make_tensor("W", TensorProto.FLOAT, [4, 3], w.ravel())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path_factory.mktemp("foreign") / "foreign.onnx"
    onnx.save(model, path)
    return path, w


def test_runs_any_onnx_model(foreign_onnx):
    path, w = foreign_onnx
    x = np.random.default_rng(0).standard_normal((2, 5, 4)).astype(np.float32)
    with edgeseq.load(path, threads=1) as runner:
        assert runner.runtime == "onnxruntime-cpu"
        assert [s.name for s in runner.inputs] == ["x"] and runner.output_names == ("y",)
        np.testing.assert_allclose(runner.infer({"x": x})["y"], np.maximum(x @ w, 0), rtol=1e-6)


def test_profile_foreign_model_needs_shapes_for_free_dims(foreign_onnx):
    path, _ = foreign_onnx
    with pytest.raises(InputError, match="pass --shape x=NxNx4"):
        edgeseq.profile(path, iterations=2)
    result = edgeseq.profile(path, shapes={"x": (1, 200, 4)}, warmup=1, iterations=5)
    assert (result.batch, result.time, result.iterations) == (1, 200, 5)


def test_our_artifact_reports_metadata(lite_onnx):
    with edgeseq.load(lite_onnx.path) as runner:
        assert runner.metadata["edgeseq.model"] == "cbhg-lite"


@pytest.mark.parametrize(
    "feed_fn, message",
    [
        (lambda x: {"wrong": x}, "do not match the model inputs"),
        (lambda x: {"features": x.astype(np.float64)}, "dtype float64"),
        (lambda x: {"features": x[0]}, "rank 3"),
        (lambda x: {"features": x[:, :, :100]}, "expects features\\[batch"),
        (lambda x: {"features": x[:, :0]}, "empty axis 1"),
        (lambda x: {"features": np.where(x > 1, np.nan, x).astype(np.float32)}, "NaN or Inf"),
        (lambda x: {"features": x.tolist()}, "numpy array"),
        (lambda x: [x], "dict"),
    ],
)
def test_bad_feeds_are_one_line_input_errors(lite_onnx, feed_fn, message):
    x = np.random.default_rng(0).standard_normal((1, 20, 128)).astype(np.float32)
    with edgeseq.load(lite_onnx.path) as runner:
        with pytest.raises(InputError, match=message) as info:
            runner.infer(feed_fn(x))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("garbage.onnx", b"\x00\x01 definitely not onnx", "not an ONNX model"),
        ("empty.onnx", b"", "is empty"),
        ("truncated.onnx", None, "cannot load"),
        ("model.bin", b"abc", "cannot tell the format"),
    ],
)
def test_bad_files_are_artifact_errors(tmp_path, lite_onnx, name, content, message):
    path = tmp_path / name
    if content is None:
        content = open(lite_onnx.path, "rb").read()[:5000]
    path.write_bytes(content)
    with pytest.raises(ArtifactError, match=message):
        edgeseq.load(path).load()


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        edgeseq.load(tmp_path / "nope.onnx")
    (tmp_path / "dir.onnx").mkdir()
    with pytest.raises(ArtifactError, match="directory"):
        edgeseq.load(tmp_path / "dir.onnx")


def test_unavailable_device_is_clear(lite_onnx):
    from edgeseq.formats.onnx import available_providers

    if "CUDAExecutionProvider" in available_providers():
        pytest.skip("this onnxruntime has CUDA; the error path cannot be reached here")
    with pytest.raises(UnsupportedError, match="no CUDAExecutionProvider"):
        edgeseq.load(lite_onnx.path, device="cuda").load()


def test_threads_must_be_positive(lite_onnx):
    with pytest.raises(InputError, match="threads"):
        edgeseq.load(lite_onnx.path, threads=0)


def test_concurrent_infer_matches_serial(lite_onnx):
    spec = edgeseq.get_model("cbhg-lite")
    feeds = [spec.example_inputs(batch=1, time=30 + i, seed=i) for i in range(8)]
    with edgeseq.load(lite_onnx.path, threads=1) as runner:
        serial = [runner.infer(f)["encoded"] for f in feeds]
        results = [None] * len(feeds)

        def work(i):
            results[i] = runner.infer(feeds[i])["encoded"]

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(feeds))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for a, b in zip(serial, results):
        np.testing.assert_array_equal(a, b)


def test_close_then_reuse_reloads(lite_onnx):
    runner = edgeseq.load(lite_onnx.path)
    feed = edgeseq.get_model("cbhg-lite").example_inputs(batch=1, time=9)
    first = runner.infer(feed)["encoded"]
    runner.close()
    assert runner.session is None
    np.testing.assert_array_equal(runner.infer(feed)["encoded"], first)


# --- timing on the CUDA / TensorRT providers: IOBinding + CUDA events on a stream handed to the provider ----------

def test_iobinding_feeds_the_session_like_infer(lite_onnx):
    """The binding the CUDA timing loop runs (inputs copied once, outputs allocated by ORT) computes what infer()
    does; here bound on the CPU, the same calls the GPU path makes with 'cuda'."""
    spec = edgeseq.get_model("cbhg-lite")
    feed = spec.example_inputs(batch=2, time=9)
    with edgeseq.load(lite_onnx.path, device="cpu") as runner:
        binding = runner._bind(feed, "cpu")
        runner.session.run_with_iobinding(binding)
        np.testing.assert_allclose(binding.copy_outputs_to_cpu()[0], runner.infer(feed)["encoded"], rtol=1e-6,
                                   atol=1e-6)


def test_bound_times_host_clock_without_a_stream(lite_onnx):
    spec = edgeseq.get_model("cbhg-lite")
    with edgeseq.load(lite_onnx.path, device="cpu") as runner:
        samples, how = runner._bound_times(spec.example_inputs(batch=1, time=20), "cpu", warmup=1, iterations=4,
                                           budget_s=None)
    assert len(samples) == 4 and all(s > 0 for s in samples)
    assert how.startswith("host clock around run_with_iobinding")


def test_bound_times_on_a_stream_use_events_and_do_not_block_each_run(lite_onnx):
    """With a compute stream (set at load where torch has CUDA) the loop records events on that stream around each
    run_with_iobinding, with ORT's per-run host synchronization turned off by a run option this onnxruntime accepts."""
    from test_latency import _Clock

    spec = edgeseq.get_model("cbhg-lite")
    clock = _Clock(cost=0.5)
    with edgeseq.load(lite_onnx.path, device="cpu") as runner:
        runner._stream = "ort-stream"
        run = runner.session.run_with_iobinding
        seen = []

        def counted(binding, options):
            seen.append(options.get_run_config_entry("disable_synchronize_execution_providers"))
            clock.enqueue()
            return run(binding, options)

        runner.session = _SessionProxy(runner.session, counted)
        samples, how = runner._bound_times(spec.example_inputs(batch=1, time=20), "cpu", warmup=2, iterations=3,
                                           budget_s=None, events=clock.event)
        runner._stream = None
    assert samples == [0.5] * 3 and seen == ["1"] * 5
    assert set(clock.streams) == {"ort-stream"}
    assert how.startswith("device time from CUDA events on the session's compute stream")


class _SessionProxy:
    def __init__(self, session, run_with_iobinding):
        self._session, self.run_with_iobinding = session, run_with_iobinding

    def __getattr__(self, name):
        return getattr(self._session, name)


def test_cuda_provider_gets_a_torch_stream_of_its_own(monkeypatch):
    """Where torch has CUDA the provider is handed a new torch stream (ORT ignores handle 0, torch's default
    stream); CPU-only sessions and machines without CUDA keep their plain provider list."""
    import torch

    from edgeseq.formats.onnx.runner import _on_torch_stream

    assert _on_torch_stream(["CPUExecutionProvider"], 0) == (None, ["CPUExecutionProvider"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _on_torch_stream(["CUDAExecutionProvider", "CPUExecutionProvider"], 0)[0] is None

    class FakeStream:
        def __init__(self, device=None):
            self.device, self.cuda_stream = device, 0x7F00

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
    stream, providers = _on_torch_stream(["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                          "CPUExecutionProvider"], 1)
    assert stream.device == 1
    options = {"device_id": "1", "user_compute_stream": str(0x7F00)}
    assert providers == [("TensorrtExecutionProvider", options), ("CUDAExecutionProvider", options),
                         "CPUExecutionProvider"]


@pytest.mark.gpu
@pytest.mark.skipif("CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers(),
                    reason="needs onnxruntime-gpu (this onnxruntime has no CUDAExecutionProvider)")
def test_cuda_provider_rows_are_timed_with_events(lite_onnx):
    import torch

    from edgeseq.latency import measure

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU that torch sees (the events are torch's)")
    spec = edgeseq.get_model("cbhg-lite")
    with edgeseq.load(lite_onnx.path, device="cuda") as runner:
        result = measure(runner, spec.example_inputs(batch=1, time=50), warmup=3, iterations=10)
    assert result.runtime == "onnxruntime-cuda"
    assert result.note.startswith("device time from CUDA events on the session's compute stream")
    assert "end to end with host copies p50" in result.note
