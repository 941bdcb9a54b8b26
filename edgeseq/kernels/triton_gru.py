"""A bidirectional GRU as ONE persistent kernel launch, for latency-bound CUDA inference.

The BiGRU's T dependent steps are most of a fused CBHG's time in a CUDA graph. Here the input projection of all
T frames is one matmul (cuBLAS), and the whole recurrence of both directions is one kernel that keeps W_hh and h
on chip: a Triton kernel (`triton_gru_kernels`) or the hand-written CUDA one (`cuda_gru`, GruKernelConfig(kind=
"cuda")). cuDNN's GRU at hidden <= 192 is a persistent kernel too (PyTorch picks CUDNN_RNN_ALGO_PERSIST_STATIC_
SMALL_H), so the gain is per-step latency, not launches. On an H200 the CUDA kernel ran 2.4-3.5x cuDNN in fp32 and
fp16 at hidden 64 and 128; the Triton kernels beat cuDNN only in fp16 and at hidden 64
(bench/results/triton-gru-quick-nvidia-h200.json, triton-gru-probe-nvidia-h200.json). `AutoBiGRU` encodes that.

triton is imported only when a Triton kernel is launched, so this module imports anywhere; they run on CUDA
tensors, or on CPU tensors under Triton's interpreter (TRITON_INTERPRET=1, for tests without a GPU).
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .._lazy import available, require
from ..errors import InputError, RuntimeFailure, UnsupportedError
from .cuda_gru import SPLITS as CUDA_SPLITS
from .cuda_gru import nvrtc_available, runs_hidden

MAX_HIDDEN = 128  # 3 x 128 x 128 weights stay on chip (registers / shared memory); larger ones would spill
KINDS = ("vec", "dot", "dotT", "cuda")
W_DTYPES = ("fp32", "fp16", "bf16", "auto")
F32_PRECISIONS = ("ieee", "tf32", "tf32x3")


@dataclass(frozen=True)
class GruKernelConfig:
    """How the kernel runs. kind 'vec': one batch row per program, broadcast-multiply + sum (no padding at
    batch 1, batch rows spread over SMs); 'dot': a tile of block_b rows per program through tl.dot (tensor
    cores; block_b >= 16); 'dotT': the same tile transposed, gh^T = W_hh h^T with W_hh as the dot's A operand
    (loaded once; only h^T changes per step), for half-precision weights; 'cuda': not Triton but the hand-written
    CUDA kernel of `cuda_gru` (one block per direction and batch row, W_hh in fp32 registers; hidden a multiple of
    16 up to 128; `split` threads per hidden unit, 2 or 4; num_warps, w_dtype and block_b do not apply). w_dtype is the dtype W_hh is held in on chip
    ('auto': the weights' own dtype); f32_precision is tl.dot's mode when W is held in fp32."""

    kind: str = "vec"
    num_warps: int = 4
    w_dtype: str = "auto"
    block_b: int = 16
    f32_precision: str = "tf32x3"
    num_stages: int = 1
    split: int = CUDA_SPLITS[0]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UnsupportedError(f"GRU kernel kind {self.kind!r} is not one of {KINDS}")
        if self.w_dtype not in W_DTYPES:
            raise UnsupportedError(f"GRU kernel w_dtype {self.w_dtype!r} is not one of {W_DTYPES}")
        if self.f32_precision not in F32_PRECISIONS:
            raise UnsupportedError(f"GRU kernel f32_precision {self.f32_precision!r} is not one of {F32_PRECISIONS}")
        if self.num_warps not in (1, 2, 4, 8, 16, 32):
            raise UnsupportedError(f"num_warps must be a power of two up to 32, not {self.num_warps}")
        if self.kind in ("dot", "dotT") and (self.block_b < 16 or self.block_b & (self.block_b - 1)):
            raise UnsupportedError(f"the {self.kind!r} kernel needs block_b a power of two >= 16, not {self.block_b}")
        if self.kind == "cuda" and self.split not in CUDA_SPLITS:
            raise UnsupportedError(f"the 'cuda' kernel splits a hidden unit over "
                                   f"{' or '.join(map(str, sorted(CUDA_SPLITS)))} threads, not {self.split}")
        if self.kind == "dotT" and self.w_dtype in ("fp32",):
            raise UnsupportedError("the 'dotT' kernel holds W_hh in fp16 or bf16 ('auto': the weights' dtype); "
                                   "fp32 weights through tl.dot miss the fp32 parity bar, use 'vec'")

    @property
    def label(self) -> str:
        """Short name as in the probe's tables, e.g. 'vec-w32-nw4', 'dot-w16-nw4-b16', 'dotT-w16-nw8-b16'."""
        weights = {"fp32": "w32", "fp16": "w16", "bf16": "wbf16", "auto": "wauto"}[self.w_dtype]
        if self.kind == "cuda":
            return f"cuda-rows-s{self.split}"
        if self.kind == "vec":
            return f"vec-{weights}-nw{self.num_warps}"
        precision = self.f32_precision if self.w_dtype == "fp32" else ""
        return f"{self.kind}-{weights}{precision}-nw{self.num_warps}-b{self.block_b}"


def default_config(dtype: torch.dtype, hidden: int, batch: int) -> GruKernelConfig:
    """The config to run when none is given: the fastest one that passed parity in bench/triton_gru_probe.py on an
    H200 (bench/results/triton-gru-probe-nvidia-h200.json). Half precision: 'dot' with W_hh in the tensors' own
    dtype (bf16 follows fp16, not measured), 4 warps above hidden 64, 8 at or below. fp32: 'vec', W_hh in fp32,
    4 warps (the 'dot' configs failed fp32 parity). batch is accepted for later tuning: at batch 16 the best
    warp count moved by about 1%, too little to encode."""
    del batch
    if dtype in (torch.float16, torch.bfloat16):
        w_dtype = "fp16" if dtype == torch.float16 else "bf16"
        return GruKernelConfig(kind="dot", num_warps=4 if hidden > 64 else 8, w_dtype=w_dtype, block_b=16)
    return GruKernelConfig(kind="vec", num_warps=4, w_dtype="fp32")


def triton_beats_cudnn(dtype: torch.dtype, hidden: int) -> bool:
    """Where the probe measured the Triton kernel faster than cuDNN's nn.GRU (both in a CUDA graph, H200): fp16 at
    hidden 64 and 128; fp32 at hidden <= 64 only (fp32 'vec' at 128 ran 0.5-0.6x cuDNN). bf16 was not measured."""
    if hidden > MAX_HIDDEN:
        return False
    return dtype == torch.float16 or (dtype == torch.float32 and hidden <= 64)


CUDA_KERNEL = GruKernelConfig(kind="cuda")  # what AutoBiGRU runs where `cuda_kernel_beats_cudnn`


def cuda_kernel_beats_cudnn(dtype: torch.dtype, hidden: int) -> bool:
    """Where the hand-written CUDA kernel measured faster than cuDNN's nn.GRU on an H200: fp32 and fp16 at hidden 64
    and 128, batch 1 (2.4-3.5x, bench/results/triton-gru-quick-nvidia-h200.json), and inside the fused cbhg,
    cbhg-lite and attention-cbhg at batch 1 and 16, T 200 and 1000, where the BiGRU alone took 0.13-0.41x of
    cuDNN's time (all 24 model x shape x dtype cases, gpu-nvidia-h200.json). Its shapes: hidden a multiple of 16 up
    to 128. bf16 runs but was not measured."""
    return dtype in (torch.float32, torch.float16) and runs_hidden(hidden)


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _tl_dtype(tl, name: str, storage: torch.dtype):
    if name == "auto":
        name = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[storage]
    return {"fp32": tl.float32, "fp16": tl.float16, "bf16": tl.bfloat16}[name]


def transposed_hh(w_hh_fwd: torch.Tensor, w_hh_bwd: torch.Tensor) -> torch.Tensor:
    """nn.GRU's two [3H, H] W_hh -> [2, 3, H(k), H(j)], each gate's W^T with j contiguous: the layout the
    kernels load (lanes along j, so the sum over k stays mostly inside each thread)."""
    hidden = w_hh_fwd.shape[1]
    return torch.stack([w_hh_fwd, w_hh_bwd]).reshape(2, 3, hidden, hidden).transpose(-1, -2).contiguous()


def bigru_recurrence(gi: torch.Tensor, w_hh_t: torch.Tensor, b_hh: torch.Tensor,
                     config: GruKernelConfig | None = None) -> torch.Tensor:
    """out [B, T, 2H] from gi [B, T, 6H] (x W_ih^T + b_ih of both directions, forward first), w_hh_t
    [2, 3, H, H] (`transposed_hh`) and b_hh [2, 3H]: a 1-layer bidirectional GRU's recurrence with h0 = 0, in one
    kernel launch."""
    if gi.dim() != 3 or w_hh_t.dim() != 4 or tuple(w_hh_t.shape[:2]) != (2, 3) or w_hh_t.shape[2] != w_hh_t.shape[3]:
        raise InputError(f"expected gi [B, T, 6H] and w_hh_t [2, 3, H, H], got {tuple(gi.shape)} and "
                         f"{tuple(w_hh_t.shape)}")
    batch, steps, width = gi.shape
    hidden = w_hh_t.shape[3]
    if width != 6 * hidden or tuple(b_hh.shape) != (2, 3 * hidden):
        raise InputError(f"gi has {width} features and b_hh shape {tuple(b_hh.shape)}; hidden {hidden} needs "
                         f"{6 * hidden} and (2, {3 * hidden})")
    if hidden > MAX_HIDDEN:
        raise UnsupportedError(f"the Triton GRU holds W_hh on chip up to hidden {MAX_HIDDEN}, not {hidden}")
    if gi.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise UnsupportedError(f"the Triton GRU runs fp32, fp16 or bf16 tensors, not {gi.dtype}")
    if gi.device.type != "cuda" and not _interpreting():
        raise UnsupportedError(f"the Triton GRU runs on CUDA tensors (or under TRITON_INTERPRET=1), not on "
                               f"{gi.device.type}")
    if batch > 65535:
        raise UnsupportedError(f"batch {batch} exceeds the kernel grid's 65535 rows")
    config = config or default_config(gi.dtype, hidden, batch)
    if config.kind == "cuda":
        from .cuda_gru import rows_recurrence

        return rows_recurrence(gi, w_hh_t, b_hh, config.split)
    out = torch.empty(batch, steps, 2 * hidden, device=gi.device, dtype=gi.dtype)
    if batch == 0 or steps == 0:
        return out
    require("triton", "triton")
    import triton
    import triton.language as tl

    from . import triton_gru_kernels as kernels

    gi, w_hh_t, b_hh = gi.contiguous(), w_hh_t.contiguous(), b_hh.contiguous()
    block_h = max(16, triton.next_power_of_2(hidden))
    w_dtype = _tl_dtype(tl, config.w_dtype, w_hh_t.dtype)
    common = (gi, w_hh_t, b_hh, out, batch, steps, gi.stride(0), gi.stride(1), out.stride(0), out.stride(1))
    launch = {"num_warps": config.num_warps, "num_stages": config.num_stages}
    if config.kind == "dotT" and w_dtype == tl.float32:  # 'auto' on fp32 tensors: see GruKernelConfig
        raise UnsupportedError("the 'dotT' kernel holds W_hh in fp16 or bf16; fp32 weights run on 'vec'")
    if config.kind == "dot":
        grid = (2, triton.cdiv(batch, config.block_b))
        kernels._bigru_dot_kernel[grid](*common, H=hidden, BLOCK_H=block_h, BLOCK_B=config.block_b,
                                        W_DTYPE=w_dtype, F32_PRECISION=config.f32_precision, **launch)
    elif config.kind == "dotT":
        grid = (2, triton.cdiv(batch, config.block_b))
        kernels._bigru_dot_t_kernel[grid](*common, H=hidden, BLOCK_H=block_h, BLOCK_B=config.block_b,
                                          W_DTYPE=w_dtype, **launch)
    else:
        kernels._bigru_vec_kernel[(2, batch)](*common, H=hidden, BLOCK_H=block_h, W_DTYPE=w_dtype, **launch)
    return out


class TritonBiGRU(nn.Module):
    """Drop-in for a 1-layer, batch-first, bidirectional nn.GRU with bias (h0 = 0): forward(x) -> output only.

    Weights are buffers (moved by .to(device, dtype)); forward does one matmul and one kernel launch, no host
    sync, so it can be captured in a CUDA graph once the kernel has compiled (run it once before capturing).
    Under torch.compile, with `compile_graph_break` (the default) the whole forward runs eagerly behind a graph
    break: measured fastest on an H200 (compile_probe c-compile-break 0.42 ms vs 0.44 ms for the custom op at cbhg
    fp16 1 x 200). With it False the recurrence is the custom op `recurrence_op` (one graph that also owns the
    input projection; `last_config` is then not updated, the compiled code does not run Python)."""

    compile_graph_break = True

    def __init__(self, gru: nn.GRU, config: GruKernelConfig | None = None):
        super().__init__()
        if not (gru.bidirectional and gru.batch_first and gru.bias and gru.num_layers == 1
                and getattr(gru, "proj_size", 0) == 0):
            raise UnsupportedError("TritonBiGRU replaces a 1-layer, batch-first, bidirectional nn.GRU with bias "
                                   "and no projection")
        self.input_size, self.hidden_size = gru.input_size, gru.hidden_size
        self.config = config
        self.last_config: GruKernelConfig | None = None
        recurrence_op()  # registered before any trace: a trace must not run the registration
        _eager_call()
        with torch.no_grad():
            self.register_buffer("w_ih", torch.cat([gru.weight_ih_l0, gru.weight_ih_l0_reverse]).detach().clone())
            self.register_buffer("b_ih", torch.cat([gru.bias_ih_l0, gru.bias_ih_l0_reverse]).detach().clone())
            self.register_buffer("w_hh_t", transposed_hh(gru.weight_hh_l0, gru.weight_hh_l0_reverse).detach())
            self.register_buffer("b_hh", torch.stack([gru.bias_hh_l0, gru.bias_hh_l0_reverse]).detach().clone())

    def with_config(self, config: GruKernelConfig) -> TritonBiGRU:
        """The same weights run with another kernel config (for benchmarks)."""
        other = TritonBiGRU.__new__(TritonBiGRU)
        nn.Module.__init__(other)
        other.input_size, other.hidden_size, other.config = self.input_size, self.hidden_size, config
        other.last_config = None
        for name, buf in self.named_buffers():
            other.register_buffer(name, buf)
        return other

    def __setstate__(self, state) -> None:  # unpickled in a fresh process: register the op there too
        super().__setstate__(state)
        recurrence_op()
        _eager_call()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.compile_graph_break and torch.compiler.is_compiling():
            return _EAGER_CALL[0](self, x)
        return self.run(x, self.config)

    def run(self, x: torch.Tensor, config: GruKernelConfig | None) -> torch.Tensor:
        """forward with `config` (None: `default_config` for x) in place of the module's own."""
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise InputError(f"TritonBiGRU expects [batch, time, {self.input_size}], got {tuple(x.shape)}")
        gi = F.linear(x, self.w_ih, self.b_ih)  # both directions' input projections, all frames: one matmul
        if torch.compiler.is_compiling():  # traced by torch.compile: the recurrence as an opaque custom op
            return torch.ops.edgeseq.bigru_recurrence(gi, self.w_hh_t, self.b_hh, _config_key(config))
        config = config or default_config(x.dtype, self.hidden_size, x.shape[0])
        self.last_config = config  # what ran, for benchmark tables
        return bigru_recurrence(gi, self.w_hh_t, self.b_hh, config)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bidirectional, config={self.config}"


def _config_key(config: GruKernelConfig | None) -> str:
    """A config as a plain string (custom ops take no dataclasses); '' is the per-dtype default."""
    if config is None:
        return ""
    return ",".join(str(v) for v in (config.kind, config.num_warps, config.w_dtype, config.block_b,
                                     config.f32_precision, config.num_stages, config.split))


def _config_from_key(key: str) -> GruKernelConfig | None:
    if not key:
        return None
    kind, warps, w_dtype, block_b, precision, stages, split = key.split(",")
    return GruKernelConfig(kind=kind, num_warps=int(warps), w_dtype=w_dtype, block_b=int(block_b),
                           f32_precision=precision, num_stages=int(stages), split=int(split))


@functools.lru_cache(maxsize=1)
def recurrence_op():
    """`bigru_recurrence` registered as the custom op edgeseq::bigru_recurrence(gi, w_hh_t, b_hh, config_key), so
    torch.compile traces a TritonBiGRU without a graph break: inductor sees an opaque op with a known output
    shape (the fake impl) and compiles the input projection and everything around it. Registered when the first
    TritonBiGRU is built (not at import), and once per process."""

    @torch.library.custom_op("edgeseq::bigru_recurrence", mutates_args=())
    def op(gi: torch.Tensor, w_hh_t: torch.Tensor, b_hh: torch.Tensor, config_key: str) -> torch.Tensor:
        return bigru_recurrence(gi, w_hh_t, b_hh, _config_from_key(config_key))

    @op.register_fake
    def _(gi, w_hh_t, b_hh, config_key):
        return gi.new_empty(gi.shape[0], gi.shape[1], 2 * w_hh_t.shape[3])

    return op


_EAGER_CALL: list = [None]


def _eager_call():
    """`module.forward(x)` behind torch.compiler.disable, made once, outside any trace (torch._dynamo is imported
    only here, when the first GRU is built): a compiled caller breaks its graph there and runs the GRU eagerly."""
    if _EAGER_CALL[0] is None:
        def call(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
            return module.forward(x)

        _EAGER_CALL[0] = torch.compiler.disable(call)
    return _EAGER_CALL[0]


@functools.lru_cache(maxsize=1)
def _have_triton() -> bool:
    return available("triton")


class AutoBiGRU(nn.Module):
    """A BiGRU that runs each call on whichever kernel measured fastest for the input's dtype and device: on CUDA
    the hand-written CUDA kernel where `cuda_kernel_beats_cudnn` (NVRTC compiles it; a CUDA build of torch carries
    NVRTC), else the Triton kernel where `triton_beats_cudnn`, else torch's nn.GRU (cuDNN); on CPU nn.GRU (Triton
    under its interpreter, for tests). The dtype is only known at call time (runners convert the module after
    fusing), so the pick happens there; `choice` records the last one ('cuda-rows-s2', 'triton[<config label>]',
    'cudnn', or 'torch' on CPU). Without NVRTC the CUDA kernel is never picked; if NVRTC or the driver refuses it
    (a GPU it does not compile for), the first call warns once with the reason (kept in `cuda_error`) and the next
    kernel in that order runs from then on. Under torch.compile it runs eagerly behind a graph break (`compile_graph_break`, as TritonBiGRU), so
    `choice` stays current."""

    compile_graph_break = True

    def __init__(self, gru: nn.GRU, config: GruKernelConfig | None = None):
        super().__init__()
        self.input_size, self.hidden_size = gru.input_size, gru.hidden_size
        self.rnn = gru  # same name as in cbhg.BiGRU: its state dict keys (gru.rnn.*) stay
        self.triton = TritonBiGRU(gru, config)
        self.choice: str | None = None
        self.cuda_error: str | None = None
        _eager_call()

    def kernel_for(self, dtype: torch.dtype, device: torch.device) -> str:
        """The rule forward applies: 'cuda', 'triton' or 'torch' (nn.GRU)."""
        if (device.type == "cuda" and self.cuda_error is None and cuda_kernel_beats_cudnn(dtype, self.hidden_size)
                and _have_nvrtc()):
            return "cuda"
        on_device = device.type == "cuda" or (device.type == "cpu" and _interpreting())
        if on_device and triton_beats_cudnn(dtype, self.hidden_size) and _have_triton():
            return "triton"
        return "torch"

    def __setstate__(self, state) -> None:
        super().__setstate__(state)
        _eager_call()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.compile_graph_break and torch.compiler.is_compiling():
            return _EAGER_CALL[0](self, x)
        kernel = self.kernel_for(x.dtype, x.device)
        if kernel == "cuda":
            try:
                y = self.triton.run(x, CUDA_KERNEL)
            except RuntimeFailure as exc:  # NVRTC or the driver refused it: fall back, once
                self.cuda_error = str(exc)
                warnings.warn(f"the CUDA GRU kernel cannot run here ({exc}); falling back to the next fastest "
                              f"kernel", RuntimeWarning, stacklevel=2)
                kernel = self.kernel_for(x.dtype, x.device)
            else:
                self.choice = CUDA_KERNEL.label
                return y
        if kernel == "triton":
            y = self.triton(x)
            if not torch.compiler.is_compiling():  # compiled: the custom op ran, no last_config to read
                self.choice = f"triton[{self.triton.last_config.label}]"
            return y
        self.choice = "cudnn" if x.device.type == "cuda" else "torch"
        return self.rnn(x)[0]


@functools.lru_cache(maxsize=1)
def _have_nvrtc() -> bool:
    return nvrtc_available()


__all__ = ["CUDA_KERNEL", "AutoBiGRU", "GruKernelConfig", "TritonBiGRU", "bigru_recurrence", "cuda_kernel_beats_cudnn",
           "default_config", "recurrence_op", "transposed_hh", "triton_beats_cudnn"]
