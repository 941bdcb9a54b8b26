"""Streaming: cbhg-lite-stream fed chunk by chunk with its state carried equals one full-sequence call, in PyTorch,
ONNX Runtime (.onnx and .ort) and LiteRT; the gate fails a runtime that drops the state or drifts past tolerance."""

import json

import numpy as np
import pytest
import torch

import edgeseq
from edgeseq.errors import InputError
from edgeseq.parity import DEFAULT_TOLERANCES
from edgeseq.streaming import StreamResult, check_stream, stream, zero_state

from conftest import assert_one_line_error

MODEL = "cbhg-lite-stream"
SPEC = edgeseq.get_model(MODEL)


def test_the_pytorch_model_streams_exactly():
    """Causal everywhere: any chunking of any input, from any state, gives the full call's outputs and state."""
    module = SPEC.build()
    feed = SPEC.example_inputs(batch=2, time=45, source="random", seed=3)  # a random (not zero) start state
    tensors = {k: torch.from_numpy(v) for k, v in feed.items()}

    def infer(f):
        with torch.inference_mode():
            out = module(*(torch.from_numpy(f[n]) if isinstance(f[n], np.ndarray) else f[n]
                           for n in SPEC.input_names))
        return dict(zip(SPEC.output_names, (o.numpy() for o in out)))

    whole = infer({k: v.numpy() for k, v in tensors.items()})
    for chunk in (1, 4, 7, 45):
        got = stream(infer, SPEC, feed, chunk)
        for name in SPEC.output_names:
            np.testing.assert_allclose(got[name], whole[name], rtol=0, atol=2e-6, err_msg=f"chunk {chunk} {name}")
    assert [t.shape for t in SPEC.inputs[1:]] == [("batch", *s) for s in _state_shapes().values()]


def _state_shapes():
    from edgeseq.models.streaming import CBHG_LITE_STREAM

    return CBHG_LITE_STREAM.state_shapes()


@pytest.fixture(scope="module")
def stream_onnx(tmp_path_factory):
    return edgeseq.export(MODEL, "onnx", out_dir=tmp_path_factory.mktemp("stream-onnx"))


def _gate_passes(path, chunks=(1, 8, 32)):
    result = edgeseq.check_stream(path, chunks=chunks, time=64)
    assert result.passed, result.failures
    assert [c.chunk for c in result.cases] == list(chunks)
    assert [c.calls for c in result.cases] == [-(-64 // c) for c in chunks]
    assert all(o.rel_l2 < 1e-5 for c in result.cases for o in c.outputs)
    assert {o.output for o in result.cases[0].outputs} == set(SPEC.output_names)  # outputs and every final state
    assert all(c.chunk_ms > 0 and c.full_ms > 0 and c.share_ratio > 0 for c in result.cases)
    assert StreamResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    return result


@pytest.mark.covers(MODEL, "onnx")
def test_onnx_passes_parity_and_the_chunked_gate(stream_onnx):
    parity = edgeseq.check(stream_onnx.path, times=(1, 7, 200), batches=(1, 3))
    assert parity.passed and parity.worst.rel_l2 < 1e-5, parity.failures
    _gate_passes(stream_onnx.path)


@pytest.mark.parametrize("precision, worst", [("fp16", 1e-3), ("int8-dynamic", 0.015)])
def test_quantized_and_fp16_artifacts_stream_within_their_precision_tolerance(stream_onnx, tmp_path, precision,
                                                                             worst):
    """The gate judges each precision by its own tolerance (fp16 1e-3, int8 0.015), every chunk size alike: the
    state round trip adds no error of its own beyond the precision's (measured 4.7e-4 fp16, 1.0-1.3e-2 int8)."""
    art = edgeseq.export(MODEL, "onnx", precision=precision, out_dir=tmp_path, parent=stream_onnx)
    result = edgeseq.check_stream(art.path, chunks=(1, 8, 32), time=64)
    assert result.passed and result.precision == precision, result.failures
    errors = [o.rel_l2 for c in result.cases for o in c.outputs if o.output == "encoded"]
    assert all(1e-6 < e < worst for e in errors), errors  # really quantized, and still within its tolerance


@pytest.mark.covers(MODEL, "ort")
def test_ort_mobile_streams_too(tmp_path):
    art = edgeseq.export(MODEL, "ort", out_dir=tmp_path)
    assert edgeseq.check(art.path, times=(1, 50), batches=(1, 2)).passed
    _gate_passes(art.path, chunks=(8,))


@pytest.mark.covers(MODEL, "tflite")
def test_tflite_passes_parity_and_the_chunked_gate(tmp_path):
    pytest.importorskip("litert_torch", reason="needs litert-torch: pip install 'edgeseq[tflite]'")
    art = edgeseq.export(MODEL, "tflite", out_dir=tmp_path)
    parity = edgeseq.check(art.path, times=(1, 7, 200), batches=(1, 3))
    assert parity.passed and parity.worst.rel_l2 < 1e-5, parity.failures
    _gate_passes(art.path)


class _Perturbed:
    """A runner around a real one: drops the carried state, or adds noise of a set relative size to each chunk."""

    def __init__(self, runner, *, forget=False, rel=0.0):
        self.runner, self.forget, self.rel = runner, forget, rel
        self.runtime = runner.runtime
        self.rng = np.random.default_rng(0)

    def infer(self, feed):
        if self.forget:
            feed = {**feed, **zero_state(SPEC, feed["features"].shape[0])}
        out = self.runner.infer(feed)
        if self.rel:
            y = out["encoded"].astype(np.float64)
            noise = self.rng.standard_normal(y.shape)
            out["encoded"] = (y + self.rel * np.linalg.norm(y) / np.linalg.norm(noise) * noise).astype(np.float32)
        return out


def _reference():
    from edgeseq.formats.torch import reference

    ref = reference(SPEC, None)
    ref.load()
    return ref


def test_the_gate_fails_a_runtime_that_drops_the_state(stream_onnx):
    with edgeseq.load(stream_onnx.path) as runner:
        result = check_stream(_Perturbed(runner, forget=True), _reference(), SPEC, precision="fp32",
                              tolerances=DEFAULT_TOLERANCES, chunks=(8,), time=48, repeats=1)
    assert not result.passed and any(line.startswith("chunk 8: encoded: rel_l2") for line in result.failures)


@pytest.mark.parametrize("rel, passes", [(1.1e-5, False), (0.9e-5, True)])
def test_the_gate_just_over_and_just_under_the_fp32_tolerance(stream_onnx, rel, passes):
    """Each chunk off by `rel` of its own norm: the streamed output is off by about `rel` overall."""
    with edgeseq.load(stream_onnx.path) as runner:
        result = check_stream(_Perturbed(runner, rel=rel), _reference(), SPEC, precision="fp32",
                              tolerances=DEFAULT_TOLERANCES, chunks=(16,), time=64, repeats=1)
    encoded = next(o for o in result.cases[0].outputs if o.output == "encoded")
    assert encoded.rel_l2 == pytest.approx(rel, rel=0.02) and result.passed is passes


def _agent():
    from edgeseq.remote import agent  # the module the device runs from the agent's zip

    return agent


def test_the_device_agent_streams_as_the_host_does(stream_onnx):
    """A device runs the gate's streams in one job (agent._streams, a copy of streaming.stream: the agent cannot
    import edgeseq): the same runner gives bit-identical outputs and final states either way, and a call per chunk."""
    from edgeseq.streaming import stream_plan

    agent = _agent()
    feed = {**SPEC.example_inputs(batch=1, time=21, source="random", seed=5), **zero_state(SPEC, 1)}
    plan = dict(stream_plan(SPEC), chunks=[1, 4, 21], repeats=2)
    with edgeseq.load(stream_onnx.path) as runner:
        outputs = {}
        timings = agent._streams(np, runner, feed, json.loads(json.dumps(plan)), outputs)  # as JSON carries it
        for chunk in plan["chunks"]:
            here = stream(runner.infer, SPEC, feed, chunk)
            assert sorted(here) == sorted(k.split("/", 1)[1] for k in outputs if k.startswith(f"chunk{chunk}/"))
            for name, value in here.items():
                np.testing.assert_array_equal(outputs[f"chunk{chunk}/{name}"], value, err_msg=f"{chunk} {name}")
    assert len(timings["full_s"]) == 2 and [len(r) for r in timings["calls_s"]["4"]] == [6, 6]


def test_bad_chunks_and_models_that_cannot_stream(stream_onnx, lite_onnx):
    with pytest.raises(InputError, match="chunks must be an integer or a list of integers >= 1"):
        edgeseq.check_stream(stream_onnx.path, chunks=(8, 0))
    with pytest.raises(InputError, match="'cbhg-lite' declares no state"):
        edgeseq.check_stream(lite_onnx.path)


def test_cli_check_streams_a_streaming_model(run_cli, stream_onnx, lite_onnx, tmp_path):
    out = tmp_path / "check.json"
    proc = run_cli("check", stream_onnx.path, "--times", "1,30", "--batches", "1", "--chunks", "4,16",
                   "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "PASS streaming cbhg-lite-stream on onnxruntime-cpu: chunks of 4, 16 frames" in proc.stdout
    assert [c["chunk"] for c in json.loads(out.read_text())["stream"]["cases"]] == [4, 16]
    proc = run_cli("check", lite_onnx.path, "--times", "1", "--batches", "1", "--chunks", "8")
    assert proc.returncode == 0, proc.stderr  # a BiGRU cannot stream exactly: the approximation's cost is shown
    assert "cbhg-lite carries no state, so it cannot stream exactly" in proc.stdout
    assert "chunk 8: lookahead 0 -> rel L2 " in proc.stdout
    assert_one_line_error(run_cli("check", lite_onnx.path, "--times", "1", "--chunks", "0"))
    proc = run_cli("check", lite_onnx.path, "--times", "1", "--batches", "1")
    assert proc.returncode == 0 and "streaming" not in proc.stdout  # no state: no gate, nothing said


def test_the_matrix_streams_a_streaming_model_and_reports_it(tmp_path):
    from edgeseq.plan import MatrixOptions
    from edgeseq.report import render_junit, render_markdown

    report = edgeseq.run_matrix(MODEL, ["onnx"], out_dir=tmp_path,
                                options=MatrixOptions(times=(1, 30), batches=(1,), warmup=1, iterations=2))
    assert report.passed and [s.runtime for s in report.streams] == ["onnxruntime-cpu"]
    assert [c.chunk for c in report.streams[0].cases] == [1, 8, 32]
    data = json.loads((tmp_path / "report.json").read_text())
    assert "## Streaming" in (tmp_path / "report.md").read_text()
    assert 'classname="stream.fp32"' in render_junit(data)
    encoded = data["streams"][0]["cases"][1]["outputs"][0]
    encoded.update(passed=False, reason="rel_l2 2e-05 > 1e-05")
    data["streams"][0]["cases"][1]["passed"] = data["streams"][0]["passed"] = False
    assert not edgeseq.Report.from_dict(data).passed  # a failed stream fails the report
    assert "| 8 | FAIL |" in render_markdown(data)
    assert "chunk 8: encoded: rel_l2 2e-05 &gt; 1e-05" in render_junit(data)


def test_a_user_model_that_declares_its_state_gets_the_gate(tmp_path):
    """Channels-first input, a GRU state with the batch on axis 1: declared once, streamed on ONNX Runtime."""
    from pathlib import Path

    ref = f"{Path(__file__).resolve().parent / 'fixtures' / 'public_cbhg.py'}:streaming_encoder"
    spec = edgeseq.get_model(ref)
    assert spec.state == (("conv_ctx", "conv_ctx_next"), ("h", "h_next"))
    art = edgeseq.export(ref, "onnx", out_dir=tmp_path)
    result = edgeseq.check_stream(art.path, chunks=(1, 5), time=40, batch=2)
    assert result.passed and result.model == "user-streaming-encoder", result.failures
    assert {o.output for o in result.cases[0].outputs} == {"y", "conv_ctx_next", "h_next"}


@pytest.mark.parametrize("state, says", [
    ({"nope": "h_next"}, "state names input 'nope', which the module does not take"),
    ({"h": "nope"}, "state pairs 'h' with output 'nope', which the module does not return"),
    ({"conv_ctx": "h_next"}, "state input 'conv_ctx' has shape [2, 32, 2] but output 'h_next' returns [1, 2, 16]"),
])
def test_bad_state_declarations_are_one_line_errors(state, says):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent / "fixtures" / "public_cbhg.py"
    loaded = importlib.util.spec_from_file_location("public_cbhg_for_state", path)
    mod = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(mod)
    example = (torch.randn(2, mod.IN_DIM, 17), torch.zeros(2, mod.IN_DIM, 2), torch.zeros(1, 2, mod.HIDDEN))
    with pytest.raises(InputError, match=says.replace("[", r"\[").replace("]", r"\]")):
        edgeseq.ModelSpec.from_module(mod.StreamingEncoder(), example, ["x", "conv_ctx", "h"],
                                      ["y", "conv_ctx_next", "h_next"], {"x": {0: "B", 2: "T"}}, state=state)


def test_a_bidirectional_model_gets_its_windowed_streaming_error(lite_onnx):
    """No state: each chunk from 32 past frames + the chunk + a lookahead. With no lookahead the backward GRU sees
    nothing of the future and the error is large; it falls as the lookahead grows."""
    from edgeseq.streaming import windowed_stream

    spec = edgeseq.get_model("cbhg-lite")
    with edgeseq.load(lite_onnx.path) as runner:
        found = windowed_stream(runner, spec, chunks=(8,), lookaheads=(0, 8, 32), time=96)
        with pytest.raises(InputError, match="lookaheads must be whole numbers >= 0"):
            windowed_stream(runner, spec, lookaheads=(-1,))
        with pytest.raises(InputError, match="carries state"):
            windowed_stream(runner, SPEC)
    errors = [c.rel_l2 for c in found.cases]
    assert errors[0] > 1e-2 and errors[0] > errors[1] > errors[2]
    assert found.lines()[0].startswith("chunk 8: lookahead 0 -> rel L2 ")
    assert json.loads(json.dumps(found.to_dict()))["context"] == 32


@pytest.mark.covers(MODEL, "executorch")
def test_executorch_streams_from_one_program_cut_at_its_gru(tmp_path):
    """The state slices come last in the trace but read the context + T long input: the cut puts each node in the
    first method where its inputs exist, so nothing longer than T crosses a cut."""
    pytest.importorskip("executorch", reason="needs executorch: pip install 'edgeseq[executorch]'")
    art = edgeseq.export(MODEL, "executorch", out_dir=tmp_path, max_time=64)
    parity = edgeseq.check(art.path, times=(1, 7, 9, 64), batches=(1, 2))
    assert parity.passed and parity.worst.rel_l2 < 1e-5, parity.failures
    _gate_passes(art.path)
