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
