"""The PyTorch original as a runner: the reference every other runtime is compared with."""

from __future__ import annotations

import torch
from torch import nn

from ..enums import Format, Precision
from ..errors import UnsupportedError
from ..models.spec import ModelSpec
from ..runner import Runner


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
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(module).eval(), {nn.Linear, nn.GRU},
                                                      dtype=torch.qint8)


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
        kind = "cuda" if self.device.startswith("cuda") else "cpu"
        suffix = {Precision.FP16: "-fp16", Precision.INT8_DYNAMIC: "-int8"}.get(self.precision, "")
        return f"torch-{kind}{suffix}"

    def _load(self):
        module = self._module if self._module is not None else self.spec.build(self._weights)
        if self.precision is Precision.INT8_DYNAMIC:
            module = int8_reference(module)
        self.module = module.to(self.device, self._dtype).eval()
        return self.spec.inputs, tuple(self.spec.output_names)

    def _infer(self, feed):
        if self.threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)  # process-wide in torch: documented in the README
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
            outs = self.module(*args)
        return tuple(outs) if isinstance(outs, (tuple, list)) else (outs,)

    def device_times_ms(self, feed, *, warmup: int = 10, iterations: int = 100) -> list[float]:
        """Per-call device time with CUDA events, inputs already on the GPU: what the GPU spends, not the host."""
        if not self.device.startswith("cuda"):
            raise UnsupportedError("device timing needs a CUDA runner")
        self.load()
        args = self._stage(feed)
        for _ in range(warmup):
            self._forward(args)
        torch.cuda.synchronize()
        times = []
        for _ in range(iterations):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            self._forward(args)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return times

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def _close(self):
        self.module = None


def reference(spec: ModelSpec, weights=None, module: nn.Module | None = None) -> TorchRunner:
    """The CPU fp32 original: what parity is measured against."""
    return TorchRunner(spec, module=module, weights=weights, device="cpu")


class TorchCudaGraphRunner(TorchRunner):
    """Captures the forward pass once per input shape in a CUDA graph and replays it: one launch instead of
    thousands, which is what a launch-bound BiGRU at batch 1 needs. Shapes are fixed per capture."""

    def __init__(self, spec: ModelSpec, **kwargs):
        kwargs.setdefault("device", "cuda")
        super().__init__(spec, **kwargs)
        if not self.device.startswith("cuda"):
            raise UnsupportedError("CUDA graphs need device 'cuda'")
        self._graphs: dict[tuple, tuple] = {}

    @property
    def runtime(self) -> str:
        return "torch-cuda-graph" + ("-fp16" if self.precision is Precision.FP16 else "")

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
