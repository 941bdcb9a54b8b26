"""CUDA runners: real tests that run wherever torch sees a GPU, and skip with that reason elsewhere."""

import numpy as np
import pytest
import torch

import edgeseq
from edgeseq.errors import UnsupportedError
from edgeseq.formats.torch import TorchCudaGraphRunner, TorchRunner

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch sees none here)")


def test_cuda_runner_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present; the no-GPU error cannot be reached")
    with pytest.raises(UnsupportedError, match="no CUDA GPU"):
        TorchRunner(edgeseq.get_model("cbhg-lite"), device="cuda")


@pytest.mark.parametrize("mode", ["reduce-overhead", "max-autotune", "fast"])
def test_bad_compile_mode_is_a_one_line_error(mode):
    """Checked before any GPU is touched; modes that capture CUDA graphs themselves clash with the runner's."""
    with pytest.raises(UnsupportedError, match="torch.compile modes default, max-autotune-no-cudagraphs") as info:
        TorchCudaGraphRunner(edgeseq.get_model("cbhg-lite"), compile=mode)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("mode", [None, "default", "max-autotune-no-cudagraphs"])
def test_compile_option_is_plumbed_into_the_runtime_label(monkeypatch, mode):
    monkeypatch.setattr("edgeseq.formats.torch.cuda_available", lambda: True)  # construction only, no GPU used
    runner = TorchCudaGraphRunner(edgeseq.get_model("cbhg-lite"), precision="fp16", compile=mode)
    assert runner.compile_mode == mode
    assert runner.runtime == ("torch-cuda-graph-compiled-fp16" if mode else "torch-cuda-graph-fp16")


def test_fused_graph_runner_rewrites_cbhg_models_and_names_its_gru_kernel(monkeypatch):
    """fuse=True: construction and the model rewrite only (no GPU here): the fused CBHG with the auto GRU, its
    runtime label, and the latency note naming the kernel that ran."""
    from edgeseq.kernels.triton_gru import AutoBiGRU

    monkeypatch.setattr("edgeseq.formats.torch.cuda_available", lambda: True)
    spec = edgeseq.get_model("cbhg")
    runner = TorchCudaGraphRunner(spec, precision="fp16", fuse=True)
    assert runner.runtime == "torch-cuda-graph-fused-auto-fp16"
    assert TorchCudaGraphRunner(spec, fuse=True, compile="default").runtime == "torch-cuda-graph-fused-auto-compiled"
    module = runner._build()
    assert isinstance(module.gru, AutoBiGRU) and type(module.bank).__name__ == "FoldedConv"  # the merged bank
    runner.module = module
    assert runner._kernel_note() == ""  # nothing ran yet
    module.gru.choice = "cuda-rows-s2"
    assert runner._kernel_note() == "; BiGRU kernel cuda-rows-s2"
    with pytest.raises(UnsupportedError, match="fuse=True rewrites CBHG-family models; seq-cnn builds a SeqCNN"):
        TorchCudaGraphRunner(edgeseq.get_model("seq-cnn"), fuse=True)._build()


def test_cuda_runners_add_the_fused_graph_for_cbhg_models_only(monkeypatch):
    from edgeseq.formats.torch import cuda_runners

    monkeypatch.setattr("edgeseq.formats.torch.cuda_available", lambda: True)
    plain = ["torch-cuda", "torch-cuda-fp16", "torch-cuda-graph", "torch-cuda-graph-fp16"]
    fused = ["torch-cuda-graph-fused-auto", "torch-cuda-graph-fused-auto-fp16"]
    assert [r.runtime for r in cuda_runners(edgeseq.get_model("cbhg"))] == plain + fused
    assert [r.runtime for r in cuda_runners(edgeseq.get_model("seq-cnn"))] == plain


def test_compile_failure_is_one_line_naming_torch_compile(monkeypatch):
    """Whatever torch.compile raises in the warm-up becomes one RuntimeFailure line (here on the CPU: the runner's
    compile step alone, the GPU calls stubbed)."""
    from edgeseq.errors import RuntimeFailure

    class Broken(torch.nn.Module):
        def forward(self, x):
            raise ValueError("inductor fell over\nwith a long traceback")

    monkeypatch.setattr("edgeseq.formats.torch.cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    runner = TorchCudaGraphRunner(edgeseq.get_model("cbhg-lite"), compile="default")
    runner.device, runner._fn = "cpu", torch.compile(Broken(), backend="eager", dynamic=False)
    with pytest.raises(RuntimeFailure, match=r"torch.compile\(mode='default'\) failed at input shapes \(1, 4\): "
                                             "ValueError: inductor fell over$"):
        runner._compile_for([torch.zeros(1, 4)])


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("name", ["cbhg", "cbhg-lite", "attention-cbhg"])
def test_cuda_fp32_matches_cpu_original(name):
    spec = edgeseq.get_model(name)
    result = edgeseq.check(TorchRunner(spec, device="cuda"), spec, times=(1, 7, 200), batches=(1, 3))
    assert result.passed, result.failures


@pytest.mark.gpu
@needs_cuda
def test_cuda_graph_replays_match_eager_at_several_shapes():
    spec = edgeseq.get_model("cbhg-lite")
    with TorchRunner(spec, device="cuda") as eager, TorchCudaGraphRunner(spec) as graph:
        for batch, time in ((1, 200), (2, 50), (1, 200)):
            feed = spec.example_inputs(batch=batch, time=time, seed=time)
            np.testing.assert_allclose(graph.infer(feed)["encoded"], eager.infer(feed)["encoded"], rtol=1e-5,
                                       atol=1e-5)
        assert len(graph._graphs) == 2  # one capture per shape, reused


@pytest.mark.gpu
@needs_cuda
def test_device_timing_uses_events():
    spec = edgeseq.get_model("cbhg-lite")
    with TorchCudaGraphRunner(spec) as graph:
        times = graph.device_times_ms(spec.example_inputs(batch=1, time=100), warmup=2, iterations=5)
    assert len(times) == 5 and all(t > 0 for t in times)


@pytest.mark.gpu
@needs_cuda
def test_compiled_graph_runner_with_auto_gru_passes_fp16_parity_and_replays():
    """The fastest measured path (gpu-nvidia-h200.json, cbhg 1 x 200): fused, the auto GRU (the CUDA kernel) behind a
    graph break, compiled in the warm-up, captured in a CUDA graph and replayed."""
    from edgeseq.models.fuse import fuse_for_inference

    import torch._dynamo

    torch._dynamo.reset()
    spec = edgeseq.get_model("cbhg-lite")
    runner = TorchCudaGraphRunner(spec, module=fuse_for_inference(spec.build(), gru="auto"), precision="fp16",
                                  compile="default")
    result = edgeseq.check(runner, spec, precision="fp16", times=(200,), batches=(1,))
    assert result.passed, result.failures
    with runner:
        feed = spec.example_inputs(batch=1, time=200, seed=3)
        first = runner.infer(feed)["encoded"]
        np.testing.assert_array_equal(runner.infer(feed)["encoded"], first)  # a replay of the same graph
        assert len(runner._graphs) == 1 and runner.runtime == "torch-cuda-graph-compiled-fp16"
        assert runner.module.gru.choice == "cuda-rows-s2" and runner._fn is not runner.module


def test_matrix_gives_every_cuda_runtime_a_parity_and_a_latency_row(monkeypatch, tmp_path):
    """run_matrix's CUDA rows, plumbing only (no GPU here): cuda_runners is replaced by CPU runners named like the
    CUDA ones, one of them fp16; each gets a parity sweep at its own precision and a latency row whose note (CUDA
    events, on a GPU) reaches report.md."""
    import dataclasses

    from edgeseq.formats import torch as torch_format

    class Named(TorchRunner):
        def __init__(self, spec, name, precision):
            super().__init__(spec, device="cpu", precision=precision)
            self._name = name

        @property
        def runtime(self):
            return self._name

        def timed_runs(self, feed, **kwargs):
            return dataclasses.replace(super().timed_runs(feed, **kwargs), note="timed the way a GPU row is")

    monkeypatch.setattr(torch_format, "cuda_available", lambda: True)
    monkeypatch.setattr(torch_format, "cuda_runners", lambda spec, weights=None: [
        Named(spec, "torch-cuda", "fp32"), Named(spec, "torch-cuda-graph-fp16", "fp16")])
    report = edgeseq.run_matrix("cbhg-lite", out_dir=tmp_path, options=edgeseq.MatrixOptions(
        times=(1, 7), batches=(1,), iterations=2, warmup=1))
    parity = {p.runtime: p for p in report.parity if not p.artifact}
    assert parity["torch-cuda"].precision == "fp32" and parity["torch-cuda-graph-fp16"].precision == "fp16"
    assert all(p.passed and len(p.cases) == 4 for p in parity.values())  # T 1, 7 x speech / random
    latency = {x.runtime: x for x in report.latency if not x.artifact}
    assert latency["torch-cuda-graph-fp16"].precision == "fp16"
    md = (tmp_path / "report.md").read_text()
    assert "| torch | fp16 | torch-cuda-graph-fp16 | PASS |" in md
    assert "- latency of torch-cuda-graph-fp16: timed the way a GPU row is" in md
    assert "**torch-cuda** on the PyTorch model" in md
    assert "latency of torch-cuda: timed the way a GPU row is" in (tmp_path / "report.html").read_text()


@pytest.mark.gpu
@needs_cuda
def test_matrix_on_a_gpu_has_eager_graph_and_fused_rows_in_fp32_and_fp16(tmp_path):
    report = edgeseq.run_matrix("cbhg-lite", out_dir=tmp_path, options=edgeseq.MatrixOptions(
        times=(7, 200), batches=(1, 3), iterations=5))
    expected = {"torch-cuda", "torch-cuda-fp16", "torch-cuda-graph", "torch-cuda-graph-fp16",
                "torch-cuda-graph-fused-auto", "torch-cuda-graph-fused-auto-fp16"}
    parity = {p.runtime: p for p in report.parity if not p.artifact}
    assert expected <= set(parity) and all(parity[r].passed for r in expected), parity
    latency = {x.runtime: x for x in report.latency if not x.artifact}
    assert all("CUDA events" in latency[r].note for r in expected)
    assert "; BiGRU kernel cuda-rows-s2;" in latency["torch-cuda-graph-fused-auto-fp16"].note


def test_gpu_session_summary_reads_a_real_run(tmp_path):
    """bench/gpu_summary.py prints the GPU session's verdict last; here on the H200 run committed under
    bench/results/ (the CUDA kernel cuda-rows-s2 compiled around: 0.237 ms, so the 0.4 ms target MET; a 0.2 ms
    target is not), and one line, not a traceback, for what a cut-short session did not write."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parent.parent / "bench"
    shutil.copy(bench / "results" / "triton-gru-quick-nvidia-h200.json", tmp_path / "triton-gru-quick.json")
    shutil.copy(bench / "results" / "gpu-nvidia-h200.json", tmp_path / "gpu-check.json")
    run = [sys.executable, str(bench / "gpu_summary.py"), str(tmp_path)]
    text = subprocess.run(run, capture_output=True, text=True, check=True).stdout
    assert "GPU: NVIDIA H200" in text and "BiGRU H=128 fp16 cuda-rows-s2: PASS, 0.53 us/step" in text
    assert "#5 target cbhg b1 T200 <= 0.4 ms: MET by compiled-triton[cuda-rows-s2] fp16 0.2369 ms" in text
    assert "gpu_check best cbhg 1x200: torch-cuda-graph-fused-compiled fp16 0.234 ms" in text
    tight = subprocess.run(run + ["--target-ms", "0.2"], capture_output=True, text=True, check=True).stdout
    assert "<= 0.2 ms: NOT MET by compiled-triton[cuda-rows-s2]" in tight
    (tmp_path / "gpu-check.json").unlink()
    (tmp_path / "triton-gru-quick.json").write_text("{cut short")
    cut = subprocess.run(run, capture_output=True, text=True, check=True)
    assert "(no triton-gru-quick.json: JSONDecodeError)" in cut.stdout and "(no gpu-check.json" in cut.stdout
    assert "Traceback" not in cut.stderr
