"""The PyTorch original as a runner: the reference every other runtime is compared with."""

from __future__ import annotations

import torch
from torch import nn

from ..enums import Format, Precision
from ..errors import EdgeseqError, RuntimeFailure, UnsupportedError
from ..models.spec import ModelSpec
from ..runner import Runner


def runtime_label(device: str, precision: Precision | str) -> str:
    """The runtime name of a TorchRunner's report rows (torch-cpu, torch-cuda-fp16, torch-cpu-int8); recipe budgets
    match rows by it."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    suffix = {Precision.FP16: "-fp16", Precision.INT8_DYNAMIC: "-int8"}.get(Precision.parse(precision), "")
    return f"torch-{kind}{suffix}"


def cuda_available() -> bool:
    return torch.cuda.is_available()


def int8_reference(module: nn.Module) -> nn.Module:
    """PyTorch's own int8 for this module: torch.ao dynamic quantization of every nn.Linear and nn.GRU (int8
    weights, activations quantized per call; convs stay float, torch has no dynamic int8 conv). Deprecated in
    torch 2.13 in favour of torchao, which quantizes only the Linear layers; this one still takes the GRU."""
    import copy
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(copy.deepcopy(module).eval(), {nn.Linear, nn.GRU},
                                                           dtype=torch.qint8)
    for m in quantized.modules():  # public CBHG code calls gru.flatten_parameters() in forward; the int8 GRU has none
        if isinstance(m, torch.ao.nn.quantized.dynamic.GRU) and not hasattr(m, "flatten_parameters"):
            m.flatten_parameters = lambda: None
    return quantized


class TorchRunner(Runner):
    format = Format.TORCH

    def __init__(
        self,
        spec: ModelSpec,
        *,
        module: nn.Module | None = None,
        weights=None,
        device: str | None = None,
        threads: int | None = None,
        precision: Precision | str = Precision.FP32,
    ):
        super().__init__(device=device, threads=threads)
        self.spec = spec
        self.precision = Precision.parse(precision)
        if self.precision not in (Precision.FP32, Precision.FP16, Precision.INT8_DYNAMIC):
            raise UnsupportedError(f"the torch runner runs fp32, fp16 or int8-dynamic, not {self.precision.value}")
        if self.precision is Precision.INT8_DYNAMIC and self.device != "cpu":
            raise UnsupportedError("torch's int8 reference (torch.ao dynamic quantization) runs on the CPU only")
        if self.device.startswith("cuda") and not cuda_available():
            raise UnsupportedError("device 'cuda' asked for, but this torch build sees no CUDA GPU")
        self._module, self._weights = module, weights
        self._dtype = torch.float16 if self.precision is Precision.FP16 else torch.float32

    @property
    def runtime(self) -> str:
        return runtime_label(self.device, self.precision)

    def _build(self) -> nn.Module:
        return self._module if self._module is not None else self.spec.build(self._weights)

    def _load(self):
        module = self._build()
        if self.precision is Precision.INT8_DYNAMIC:
            module = int8_reference(module)
        self.module = module.to(self.device, self._dtype).eval()
        self._fn = self.module  # what _forward calls: the module, or (TorchCudaGraphRunner) its compiled wrapper
        return self.spec.inputs, tuple(self.spec.output_names)

    def _infer(self, feed):
        if self.threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)  # process-wide in torch (docs/api.md)
        outs = self._forward(self._stage(feed))
        return {name: o.float().cpu().numpy() for name, o in zip(self._outputs, outs)}

    def _stage(self, feed) -> list[torch.Tensor]:
        return [torch.from_numpy(feed[t.name]).to(self.device, self._dtype) for t in self._inputs]

    def _forward(self, args: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        # fp32 means fp32: cuDNN would otherwise run convs in TF32 (about 1e-3 relative error) on Ampere and newer.
        # benchmark=True: without autotuning, cuDNN picked a conv algorithm 5-100x slower for some fp32 shapes
        # (cbhg, batch 1, T=200 on an H200); the cost is one tuning pass per new input shape.
        tf32 = self.precision is not Precision.FP32
        flags = torch.backends.cudnn.flags(enabled=True, benchmark=self.device.startswith("cuda"), allow_tf32=tf32)
        with torch.inference_mode(), flags:
            outs = self._fn(*args)
        return tuple(outs) if isinstance(outs, (tuple, list)) else (outs,)

    def device_times_ms(self, feed, *, warmup: int = 10, iterations: int = 100,
                        budget_s: float | None = None) -> list[float]:
        """Per-call device time with CUDA events, inputs already on the GPU: what the GPU spends, not the host.
        Stops at `iterations` or once `budget_s` has passed (at least one sample)."""
        from ..latency import cuda_event_times

        if not self.device.startswith("cuda"):
            raise UnsupportedError("device timing needs a CUDA runner")
        self.load()
        args = self._stage(feed)
        return cuda_event_times(lambda: self._forward(args), warmup=warmup, iterations=iterations,
                                budget_s=budget_s)

    def timed_runs(self, feed, *, warmup: int, iterations: int, budget_s: float | None):
        """On CUDA: device time from CUDA events after warm-up (issue #5: the GPU's time, not the host's), with the
        end-to-end p50 (host copies in and out, what an app pays) measured too and kept in the result's note. On
        the CPU: the end-to-end loop every local runner uses."""
        if not self.device.startswith("cuda"):
            return super().timed_runs(feed, warmup=warmup, iterations=iterations, budget_s=budget_s)
        from ..latency import device_timings, time_locally

        device = self.device_times_ms(feed, warmup=warmup, iterations=iterations, budget_s=budget_s)
        e2e = time_locally(self, feed, warmup=1, iterations=max(5, len(device) // 5), budget_s=budget_s)
        return device_timings(device, e2e, "device time from CUDA events, inputs already on the GPU"
                              + self._kernel_note())

    def _kernel_note(self) -> str:
        """What a latency note adds about the kernels that ran ('' here; see TorchCudaGraphRunner)."""
        return ""

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def _close(self):
        self.module = self._fn = None


def reference(spec: ModelSpec, weights=None, module: nn.Module | None = None) -> TorchRunner:
    """The CPU fp32 original: what parity is measured against."""
    return TorchRunner(spec, module=module, weights=weights, device="cpu")


# torch.compile modes the graph runner takes: the ones that leave CUDA graphs to it (the others capture their own)
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs")


class TorchCudaGraphRunner(TorchRunner):
    """Captures the forward pass once per input shape in a CUDA graph and replays it: one launch instead of
    thousands, which is what a launch-bound BiGRU at batch 1 needs. Shapes are fixed per capture.

    fuse=True (CBHG-family models): the model is first rewritten by `models.fuse.fuse_for_inference(gru="auto")`
    (batch norms folded, the bank merged into one conv, the BiGRU as one persistent kernel: the CUDA kernel where it
    runs), the fastest path the matrix runs that keeps parity with the original (cbhg fp16 1 x 200 on an H200: 0.28
    ms vs 0.82 ms unfused, bench/results/gpu-nvidia-h200.json). Runtime label
    `torch-cuda-graph-fused-auto[-fp16]`; its latency note names the BiGRU kernel that ran.

    compile="default" | "max-autotune-no-cudagraphs": the module (converted, on the GPU) is wrapped in
    torch.compile(mode=compile, dynamic=False) and compiled in the warm-up before each new shape's capture; inductor
    fuses the small kernels around the BiGRU (cbhg fp16 1 x 200 on an H200, fused with the CUDA GRU kernel: 0.237 ms
    vs 0.283 ms uncompiled, bench/results/triton-gru-quick-nvidia-h200.log; the GRU runs eagerly behind a graph
    break, see kernels.triton_gru.TritonBiGRU). `module` stays the uncompiled
    one, for inspection."""

    def __init__(self, spec: ModelSpec, *, compile: str | None = None, fuse: bool = False, **kwargs):
        kwargs.setdefault("device", "cuda")
        if compile is not None and compile not in COMPILE_MODES:
            raise UnsupportedError(f"compile={compile!r}: the CUDA graph runner takes torch.compile modes "
                                   f"{', '.join(COMPILE_MODES)} or None (the others capture CUDA graphs themselves)")
        super().__init__(spec, **kwargs)
        if not self.device.startswith("cuda"):
            raise UnsupportedError("CUDA graphs need device 'cuda'")
        self.compile_mode, self.fuse = compile, fuse
        self._graphs: dict[tuple, tuple] = {}

    @property
    def runtime(self) -> str:
        return ("torch-cuda-graph" + ("-fused-auto" if self.fuse else "") + ("-compiled" if self.compile_mode else "")
                + ("-fp16" if self.precision is Precision.FP16 else ""))

    def _build(self) -> nn.Module:
        module = super()._build()
        if not self.fuse:
            return module
        from ..models.cbhg import CBHG
        from ..models.fuse import fuse_for_inference

        if not isinstance(module, CBHG):
            raise UnsupportedError(f"fuse=True rewrites CBHG-family models; {self.spec.name} builds a "
                                   f"{type(module).__name__}")
        return fuse_for_inference(module, gru="auto")

    def _kernel_note(self) -> str:
        choice = getattr(getattr(self.module, "gru", None), "choice", None) if self.fuse else None
        return f"; BiGRU kernel {choice}" if choice else ""

    def _load(self):
        loaded = super()._load()
        if self.compile_mode:  # lazy: compiles at the first call of each shape (the warm-up in _capture)
            self._fn = torch.compile(self.module, mode=self.compile_mode, dynamic=False)
        return loaded

    def _compile_for(self, args: list[torch.Tensor]) -> None:
        """Compiles for these shapes on the current stream, outside any capture, as it was measured; a failure
        (or dynamo's recompile limit, which would silently fall back to eager) is one line naming torch.compile."""
        import torch._dynamo

        limit = {"fail_on_recompile_limit_hit": True} if hasattr(torch._dynamo.config,
                                                                 "fail_on_recompile_limit_hit") else {}
        try:
            with torch._dynamo.config.patch(**limit):
                TorchRunner._forward(self, args)
            torch.cuda.synchronize()
        except EdgeseqError:
            raise
        except Exception as exc:
            first = next((line for line in str(exc).splitlines() if line.strip()), "")
            shapes = ", ".join(str(tuple(a.shape)) for a in args)
            hint = "; torch._dynamo.reset() clears its cache" if "RecompileLimit" in type(exc).__name__ else ""
            raise RuntimeFailure(f"torch.compile(mode={self.compile_mode!r}) failed at input shapes {shapes}: "
                                 f"{type(exc).__name__}: {first[:300]}{hint}") from exc

    def _forward(self, args: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        key = tuple((tuple(a.shape), a.dtype) for a in args)
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._capture(args)
            self._graphs[key] = entry
        graph, static_in, static_out = entry
        for buf, a in zip(static_in, args):
            if buf.data_ptr() != a.data_ptr():
                buf.copy_(a)
        graph.replay()
        return static_out

    def _capture(self, args: list[torch.Tensor]):
        static_in = [a.clone() for a in args]
        if self.compile_mode:
            self._compile_for(static_in)
        parent = super()._forward
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):  # warm up cuDNN / cuBLAS workspaces outside the capture
                parent(static_in)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = parent(static_in)
        return graph, static_in, static_out

    def _close(self):
        self._graphs.clear()
        super()._close()


def cuda_runners(spec: ModelSpec, weights=None) -> list[TorchRunner]:
    """The PyTorch CUDA runtimes of the matrix (issue #5), unloaded: eager fp32 and fp16, the same captured in CUDA
    graphs (one capture per input shape, replayed), and for CBHG-family models the fused graph with the fastest
    BiGRU kernel (`TorchCudaGraphRunner(fuse=True)`). torch.compile around it (faster still at batch 1, but a
    compile per input shape) and the other kernels are measured by bench/gpu_check.py."""
    from ..models.cbhg import CBHG

    runners = [TorchRunner(spec, weights=weights, device="cuda"),
               TorchRunner(spec, weights=weights, device="cuda", precision=Precision.FP16),
               TorchCudaGraphRunner(spec, weights=weights),
               TorchCudaGraphRunner(spec, weights=weights, precision=Precision.FP16)]
    if isinstance(spec.build(), CBHG):  # seeded weights: only the class is asked
        runners += [TorchCudaGraphRunner(spec, weights=weights, fuse=True),
                    TorchCudaGraphRunner(spec, weights=weights, fuse=True, precision=Precision.FP16)]
    return runners
