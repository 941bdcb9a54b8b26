"""The persistent Triton BiGRU: parity with nn.GRU on Triton's CPU interpreter (TRITON_INTERPRET=1) and on CUDA.

The `test` extra installs triton, and tests/conftest.py turns Triton's interpreter on where torch sees no GPU, so the
interpreter tests run in the default suite. Triton before 3.7 needs numpy < 2.4 there (its interpreter called int()
on 1-element arrays for a runtime loop bound: triton-lang/triton#9171).
"""

import copy
import os

import numpy as np
import pytest
import torch
from torch import nn

import edgeseq
from edgeseq._lazy import available
from edgeseq.errors import InputError, UnknownNameError, UnsupportedError
from edgeseq.formats.torch import TorchCudaGraphRunner, TorchRunner
from edgeseq.models.fuse import fuse_for_inference
from edgeseq.models.cbhg import BiGRU
from edgeseq.kernels import triton_gru
from edgeseq.kernels.triton_gru import (CUDA_KERNEL, AutoBiGRU, GruKernelConfig, TritonBiGRU, bigru_recurrence,
                                       cuda_kernel_beats_cudnn, default_config,
                                        transposed_hh, triton_beats_cudnn)

HAVE_TRITON = available("triton")
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
_version = lambda text: tuple(int(p) for p in text.split(".")[:2] if p.isdigit())  # noqa: E731
TRITON_VERSION = __import__("importlib.metadata").metadata.version("triton") if HAVE_TRITON else "0"
NUMPY_OK = _version(TRITON_VERSION) >= (3, 7) or _version(np.__version__) < (2, 4)

needs_triton = pytest.mark.skipif(not HAVE_TRITON, reason="needs triton (pip install 'edgeseq[triton]'); not installed")
needs_interpreter = pytest.mark.skipif(
    not (HAVE_TRITON and INTERPRET and NUMPY_OK),
    reason=("needs triton (pip install 'edgeseq[test]')" if not HAVE_TRITON else
            "needs Triton's interpreter (TRITON_INTERPRET=1; tests/conftest.py sets it where torch sees no GPU)"
            if not INTERPRET else f"needs triton >= 3.7 or numpy < 2.4 (triton {TRITON_VERSION}, numpy {np.__version__})"),
)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch sees none here)")


def _rel_l2(got: torch.Tensor, ref: torch.Tensor) -> float:
    got, ref = got.double(), ref.double()
    return float(torch.linalg.vector_norm(got - ref) / torch.linalg.vector_norm(ref))


def _gru(hidden: int, seed: int, input_size: int | None = None) -> nn.GRU:
    torch.manual_seed(seed)
    return nn.GRU(input_size or hidden, hidden, batch_first=True, bidirectional=True).eval()


# --- Triton's interpreter (CPU) -------------------------------------------------------------------------------

@needs_interpreter
@pytest.mark.parametrize(
    ("config", "hidden", "batch", "bar"),
    [
        (GruKernelConfig("vec", 8, "fp32"), 64, 3, 1e-5),
        (GruKernelConfig("vec", 8, "fp32"), 40, 2, 1e-5),  # hidden not a power of two: padded lanes stay 0
        (GruKernelConfig("vec", 8, "fp16"), 64, 1, 1e-3),
        (GruKernelConfig("dot", 8, "fp32", 16, "ieee"), 64, 3, 1e-5),
        (GruKernelConfig("dot", 8, "fp16", 16), 24, 17, 1e-3),  # two batch tiles, the second mostly padding
    ],
)
def test_interpreted_kernel_matches_nn_gru(config, hidden, batch, bar):
    gru = _gru(hidden, seed=hidden + batch, input_size=48)
    x = torch.randn(batch, 9, 48)
    with torch.no_grad():
        expected = gru(x)[0]
        got = TritonBiGRU(gru, config)(x)
    assert got.shape == expected.shape
    assert _rel_l2(got, expected) < bar


@needs_interpreter
@pytest.mark.parametrize("hidden", [128, 64])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("warps", [4, 8])
def test_interpreted_transposed_dot_kernel_matches_nn_gru(hidden, batch, warps):
    """'dotT' (gh^T = W_hh h^T, tiles [hidden, batch]): both directions' halves of the output, batch columns
    past B masked, W_hh held in fp16 (the fp16 bar)."""
    gru = _gru(hidden, seed=hidden + batch, input_size=40)
    x = torch.randn(batch, 7, 40)
    with torch.no_grad():
        expected = gru(x)[0]
        got = TritonBiGRU(gru, GruKernelConfig("dotT", warps, "fp16", 16))(x)
    assert got.shape == expected.shape
    assert _rel_l2(got[..., :hidden], expected[..., :hidden]) < 1e-3  # forward
    assert _rel_l2(got[..., hidden:], expected[..., hidden:]) < 1e-3  # backward


@needs_interpreter
def test_interpreted_transposed_dot_kernel_runs_fp16_storage():
    """'dotT' with w_dtype 'auto' on fp16 tensors: W_hh held in fp16; 17 rows = two batch tiles, the second mostly
    padding. (bf16 storage is checked on CUDA only: Triton 3.6's interpreter gets bf16 wrong for every kernel
    here, 'vec' and 'dot' too.)"""
    dtype, bar = torch.float16, 1e-3
    gru = _gru(64, seed=11)
    x = torch.randn(17, 5, 64)
    with torch.no_grad():
        expected = gru(x)[0]
        got = TritonBiGRU(gru, GruKernelConfig("dotT", 4, "auto", 16)).to(dtype)(x.to(dtype))
    assert got.dtype == dtype
    assert _rel_l2(got.float(), expected) < bar


@needs_interpreter
def test_transposed_dot_kernel_refuses_fp32_weights():
    gru = _gru(16, seed=0)
    with pytest.raises(UnsupportedError, match="fp16 or bf16"):
        TritonBiGRU(gru, GruKernelConfig("dotT", 4, "auto"))(torch.randn(1, 3, 16))


@needs_interpreter
def test_interpreted_kernel_with_fp16_storage_stays_within_the_fp16_bar():
    gru = _gru(32, seed=3)
    x = torch.randn(2, 6, 32)
    with torch.no_grad():
        expected = gru(x)[0]
        got = TritonBiGRU(gru).half()(x.half())
    assert got.dtype == torch.float16
    err = _rel_l2(got.float(), expected)
    assert 0 < err < 1e-3  # fp16 rounding shows, but stays inside the parity bar for fp16


@needs_interpreter
def test_backward_direction_sees_the_future():
    """Changing only the last frame changes the backward half of every output frame, and only the last forward one."""
    gru = _gru(16, seed=5)
    module = TritonBiGRU(gru)
    x = torch.randn(1, 6, 16)
    y = x.clone()
    y[:, -1] += 1.0
    with torch.no_grad():
        a, b = module(x), module(y)
    changed = (a - b).abs().amax(dim=0) > 1e-6  # [T, 2H]
    assert changed[:, 16:].any(dim=1).all()  # backward half: every frame
    assert changed[:-1, :16].sum() == 0 and changed[-1, :16].any()  # forward half: the last frame only


@needs_interpreter
def test_interpreted_fused_cbhg_lite_with_triton_gru_passes_parity():
    spec = edgeseq.get_model("cbhg-lite")
    fused = fuse_for_inference(spec.build(), gru="triton")
    assert isinstance(fused.gru, TritonBiGRU)
    result = edgeseq.check(TorchRunner(spec, module=fused), spec, times=(1, 7), batches=(1, 2))
    assert result.passed, result.failures


@needs_interpreter
@pytest.mark.parametrize(("name", "picked"), [("cbhg-lite", "triton[vec-w32-nw4]"), ("cbhg", "torch")])
def test_interpreted_auto_gru_picks_per_hidden_size_and_passes_parity(name, picked):
    """fp32: Triton at hidden 64 (cbhg-lite); nn.GRU at 128 (cbhg), where Triton measured slower than cuDNN."""
    spec = edgeseq.get_model(name)
    fused = fuse_for_inference(spec.build(), gru="auto")
    result = edgeseq.check(TorchRunner(spec, module=fused), spec, times=(1, 7), batches=(1, 2))
    assert result.passed, result.failures
    assert fused.gru.choice == picked


@needs_interpreter
@pytest.mark.parametrize("config", [None, GruKernelConfig("vec", 8, "fp32")])
def test_torch_compile_traces_the_recurrence_as_one_custom_op(config):
    """compile_graph_break=False: the recurrence is edgeseq::bigru_recurrence, one graph, no break, same output."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    module = TritonBiGRU(_gru(32, seed=5), config)
    module.compile_graph_break = False
    x = torch.randn(2, 7, 32)
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(module, backend="aot_eager", fullgraph=True, dynamic=False)
    with torch.inference_mode():
        got, want = compiled(x), module(x)
    assert sum(counters["graph_break"].values()) == 0
    assert _rel_l2(got, want) < 1e-6


@needs_interpreter
def test_torch_compile_of_auto_gru_takes_the_triton_path():
    import torch._dynamo

    module = AutoBiGRU(_gru(32, seed=6))  # fp32 at hidden 32: the rule picks Triton
    x = torch.randn(1, 6, 32)
    torch._dynamo.reset()
    compiled = torch.compile(module, backend="aot_eager", dynamic=False)
    with torch.inference_mode():
        got, want = compiled(x), module.rnn(x)[0]
    assert _rel_l2(got, want) < 1e-5


@needs_interpreter
def test_torch_compile_runs_the_triton_gru_eagerly_behind_a_graph_break_by_default():
    """The default (compile_probe's fastest cbhg variant): the compiled caller breaks at the GRU, which runs its
    eager path and so still records the config it ran."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    module = TritonBiGRU(_gru(32, seed=7))
    x = torch.randn(2, 5, 32)
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(lambda t: module(t * 2.0) + 1.0, backend="aot_eager", dynamic=False)
    with torch.inference_mode():
        got, want = compiled(x), module(x * 2.0) + 1.0
    assert sum(counters["graph_break"].values()) >= 1
    assert module.last_config is not None and _rel_l2(got, want) < 1e-6


def test_torch_compile_of_auto_gru_breaks_the_graph_and_records_its_choice_on_cpu():
    """No triton needed: on the CPU the auto GRU runs nn.GRU (the Triton kernel under the interpreter); compiled,
    it still runs eagerly and records which."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    module = AutoBiGRU(_gru(16, seed=8))
    x = torch.randn(1, 6, 16)
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(lambda t: module(torch.tanh(t)).sum(-1), backend="eager", dynamic=False)
    with torch.inference_mode():
        got, want = compiled(x), module.rnn(torch.tanh(x))[0].sum(-1)
    assert sum(counters["graph_break"].values()) >= 1
    expected = module.kernel_for(x.dtype, x.device)
    assert module.choice.startswith(expected) and torch.allclose(got, want, atol=1e-5)


def test_config_key_round_trips():
    from edgeseq.kernels.triton_gru import _config_from_key, _config_key

    assert _config_from_key(_config_key(None)) is None
    for config in (GruKernelConfig("dot", 4, "fp16", 32, "ieee", 2), GruKernelConfig("vec", 8, "auto")):
        assert _config_from_key(_config_key(config)) == config


@needs_interpreter
def test_empty_batch_or_time_returns_empty_without_a_launch():
    module = TritonBiGRU(_gru(16, seed=1))
    assert module(torch.randn(0, 5, 16)).shape == (0, 5, 32)
    assert module(torch.randn(2, 0, 16)).shape == (2, 0, 32)


# --- clear errors (no triton needed: raised before the kernel is imported) ---------------------------------------

def test_unsupported_grus_and_shapes_are_clear_errors(monkeypatch):
    with pytest.raises(UnsupportedError, match="bidirectional"):
        TritonBiGRU(nn.GRU(8, 8, batch_first=True))
    with pytest.raises(UnsupportedError, match="hidden 128"):
        TritonBiGRU(_gru(160, seed=0))(torch.randn(1, 3, 160))
    with pytest.raises(InputError, match=r"\[batch, time, 16\]"):
        TritonBiGRU(_gru(16, seed=0))(torch.randn(3, 16))
    with pytest.raises(InputError, match="w_hh_t"):
        bigru_recurrence(torch.randn(1, 3, 96), torch.randn(2, 48, 16), torch.randn(2, 48))
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(UnsupportedError, match="CUDA tensors"):
        TritonBiGRU(_gru(16, seed=0))(torch.randn(1, 3, 16))


def test_bad_configs_and_backends_are_clear_errors():
    with pytest.raises(UnsupportedError, match="block_b"):
        GruKernelConfig("dot", block_b=8)
    with pytest.raises(UnsupportedError, match="kind"):
        GruKernelConfig("mma")
    with pytest.raises(UnsupportedError, match="fp16 or bf16"):
        GruKernelConfig("dotT", w_dtype="fp32")
    assert GruKernelConfig("dotT", 8, "fp16").label == "dotT-w16-nw8-b16"
    with pytest.raises(UnknownNameError, match="cublas"):
        fuse_for_inference(edgeseq.get_model("cbhg-lite").build(), gru="cublas")


@pytest.mark.parametrize("gru", ["torch", "cudnn"])
def test_torch_and_cudnn_keep_nn_gru(gru):
    assert isinstance(fuse_for_inference(edgeseq.get_model("cbhg-lite").build(), gru=gru).gru, BiGRU)


def test_auto_gru_on_cpu_runs_nn_gru_and_records_it(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    model = edgeseq.get_model("cbhg-lite").build().eval()
    fused = fuse_for_inference(model, gru="auto")
    assert isinstance(fused.gru, AutoBiGRU) and fused.gru.choice is None
    x = torch.randn(2, 9, model.cfg.highway_dim)
    with torch.no_grad():
        torch.testing.assert_close(fused.gru(x), model.gru(x), rtol=0, atol=0)
    assert fused.gru.choice == "torch"
    assert {k for k in fused.gru.state_dict() if k.startswith("rnn.")} == set(model.gru.state_dict())  # same keys


def test_auto_rule_on_cuda_without_nvrtc_picks_triton_only_where_it_beat_cudnn(monkeypatch):
    monkeypatch.setattr(triton_gru, "_have_nvrtc", lambda: False)
    cuda = torch.device("cuda")
    assert AutoBiGRU(_gru(128, seed=0)).kernel_for(torch.float32, cuda) == "torch"  # fp32 at 128: cuDNN faster
    assert not triton_beats_cudnn(torch.float16, 256)  # over the kernel's on-chip limit
    assert not triton_beats_cudnn(torch.bfloat16, 64)  # not measured
    triton = "triton" if HAVE_TRITON else "torch"
    assert AutoBiGRU(_gru(128, seed=0)).kernel_for(torch.float16, cuda) == triton
    assert AutoBiGRU(_gru(64, seed=0)).kernel_for(torch.float32, cuda) == triton


def test_auto_rule_puts_the_cuda_kernel_first_on_cuda_where_nvrtc_loads(monkeypatch):
    monkeypatch.setattr(triton_gru, "_have_nvrtc", lambda: True)
    monkeypatch.setattr(triton_gru, "_have_triton", lambda: True)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    auto = AutoBiGRU(_gru(128, seed=0))
    assert auto.kernel_for(torch.float32, cuda) == auto.kernel_for(torch.float16, cuda) == "cuda"
    assert auto.kernel_for(torch.bfloat16, cuda) == "torch"  # runs, but neither kernel was measured in bf16
    assert auto.kernel_for(torch.float32, cpu) == "torch"  # not a CUDA tensor: never the CUDA kernel
    assert AutoBiGRU(_gru(40, seed=0)).kernel_for(torch.float16, cuda) == "triton"  # not a multiple of 16
    assert not cuda_kernel_beats_cudnn(torch.float32, 256) and cuda_kernel_beats_cudnn(torch.float16, 16)
    auto.cuda_error = "NVRTC could not compile the CUDA GRU kernel for sm_50"
    assert auto.kernel_for(torch.float16, cuda) == "triton"  # after a failure: the next kernel in the order


def test_auto_gru_falls_back_once_with_a_warning_when_the_cuda_kernel_cannot_run(monkeypatch):
    """The CUDA kernel refused at its first call (here: NVRTC cannot compile it): one warning naming why, the call
    still answers (nn.GRU on this CPU), and the kernel is not tried again."""
    from edgeseq.errors import RuntimeFailure

    auto = AutoBiGRU(_gru(32, seed=3))
    tries = []

    def refuse(x, config):
        tries.append(config)
        raise RuntimeFailure("NVRTC could not compile the CUDA GRU kernel for sm_50: error")

    monkeypatch.setattr(auto.triton, "run", refuse)
    monkeypatch.setattr(auto, "kernel_for", lambda dtype, device: "torch" if auto.cuda_error else "cuda")
    x = torch.randn(2, 5, auto.input_size)
    with pytest.warns(RuntimeWarning, match="cannot run here .*sm_50.*falling back"), torch.no_grad():
        got = auto(x)
    with torch.no_grad():
        torch.testing.assert_close(got, auto.rnn(x)[0], rtol=0, atol=0)
        auto(x)
    assert tries == [CUDA_KERNEL] and auto.choice == "torch" and "sm_50" in auto.cuda_error


def test_default_configs_are_valid_and_keep_fp32_weights_in_fp32():
    """fp32 runs 'vec' with W_hh in fp32: the 'dot' configs (tf32 or fp16 W_hh) miss the fp32 parity bar."""
    for hidden in (16, 64, 128):
        for batch in (1, 16):
            fp32 = default_config(torch.float32, hidden, batch)
            assert (fp32.kind, fp32.w_dtype) == ("vec", "fp32")
            for dtype, w_dtype in ((torch.float16, "fp16"), (torch.bfloat16, "bf16")):
                half = default_config(dtype, hidden, batch)
                assert (half.kind, half.w_dtype) == ("dot", w_dtype)
    assert default_config(torch.float16, 128, 1).label == "dot-w16-nw4-b16"
    assert GruKernelConfig("dot", 8, "fp32", 16, "tf32").label == "dot-w32tf32-nw8-b16"


def test_transposed_hh_is_each_gates_transpose():
    gru = _gru(8, seed=2)
    w = transposed_hh(gru.weight_hh_l0, gru.weight_hh_l0_reverse)
    assert w.shape == (2, 3, 8, 8)
    torch.testing.assert_close(w[1, 2], gru.weight_hh_l0_reverse[16:24].T)


# --- CUDA -------------------------------------------------------------------------------------------------------

@pytest.mark.gpu
@needs_triton
@needs_cuda
@pytest.mark.parametrize("gru", ["triton", "auto"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("name", ["cbhg", "cbhg-lite"])
def test_cuda_fused_cbhg_with_triton_gru_matches_the_original(name, precision, gru):
    spec = edgeseq.get_model(name)
    fused = fuse_for_inference(spec.build(), gru=gru)
    runner = TorchRunner(spec, module=fused, device="cuda", precision=precision)
    result = edgeseq.check(runner, spec, precision=precision, times=(1, 7, 200), batches=(1, 3))
    assert result.passed, result.failures
    if gru == "auto":  # hidden 128 and 64, fp32 and fp16: the CUDA kernel (a CUDA build of torch has NVRTC)
        assert fused.gru.choice == CUDA_KERNEL.label == "cuda-rows-s2" and fused.gru.cuda_error is None


@pytest.mark.gpu
@needs_triton
@needs_cuda
@pytest.mark.parametrize("config", [GruKernelConfig("vec", 8, "fp32"), GruKernelConfig("dot", 8, "fp16", 16),
                                    GruKernelConfig("dotT", 4, "fp16", 16), GruKernelConfig("dotT", 8, "fp16", 16)])
def test_cuda_kernel_configs_match_nn_gru(config):
    gru = _gru(128, seed=11)
    x = torch.randn(5, 50, 128)
    with torch.no_grad():
        expected = gru(x)[0]
        got = TritonBiGRU(gru, config).cuda()(x.cuda()).cpu()
    assert _rel_l2(got, expected) < (1e-5 if config.w_dtype == "fp32" else 1e-3)


@pytest.mark.gpu
@needs_triton
@needs_cuda
@pytest.mark.parametrize("kind", ["dot", "dotT"])
def test_cuda_bf16_storage_matches_nn_gru(kind):
    """bf16 tensors (W_hh held in bf16): checked here, the interpreter gets bf16 wrong. bf16 keeps 8 mantissa
    bits, so the bar is looser than fp16's."""
    gru = _gru(128, seed=12)
    x = torch.randn(3, 50, 128)
    with torch.no_grad():
        expected = gru(x)[0]
        got = TritonBiGRU(gru, GruKernelConfig(kind, 4, "auto", 16)).cuda().bfloat16()(x.cuda().bfloat16())
    assert _rel_l2(got.float().cpu(), expected) < 1e-2


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("gru", [pytest.param("triton", marks=needs_triton), "cuda"])
def test_cuda_graph_capture_and_replay_of_the_persistent_gru(gru):
    """Triton's kernel or the CUDA C++ one (edgeseq/kernels/cuda_gru.cu) captured and replayed, per shape."""
    spec = edgeseq.get_model("cbhg")
    fused = fuse_for_inference(spec.build(), gru=gru)
    name = spec.output_names[0]
    with TorchRunner(spec, module=fused, device="cuda") as eager, \
            TorchCudaGraphRunner(spec, module=copy.deepcopy(fused)) as graph:
        for batch, time in ((1, 200), (2, 50), (1, 200)):
            feed = spec.example_inputs(batch=batch, time=time, seed=time)
            np.testing.assert_allclose(graph.infer(feed)[name], eager.infer(feed)[name], rtol=1e-5, atol=1e-5)
        assert len(graph._graphs) == 2


@pytest.mark.gpu
@needs_triton
@needs_cuda
def test_cuda_inductor_compiled_fused_cbhg_lite_captures_in_one_cuda_graph():
    """bench/compile_probe.py's variant d: inductor compiles the fused model around the custom op, the runner's
    warm-up compiles, its CUDA graph captures compiled kernels and the Triton GRU together."""
    import torch._dynamo

    spec = edgeseq.get_model("cbhg-lite")
    fused = fuse_for_inference(spec.build(), gru="triton").to("cuda", torch.float16).eval()
    fused.gru.compile_graph_break = False  # variant d: the custom op, not the default graph break
    torch._dynamo.reset()
    compiled = torch.compile(fused, mode="default", dynamic=False)
    name = spec.output_names[0]
    feed = spec.example_inputs(batch=1, time=50, seed=3)
    with TorchRunner(spec, device="cpu") as reference, \
            TorchCudaGraphRunner(spec, module=compiled, precision="fp16") as graph:
        want = reference.infer(feed)[name]
        for _ in range(2):  # capture, then replay
            assert _rel_l2(torch.from_numpy(graph.infer(feed)[name]), torch.from_numpy(want)) < 1e-3
