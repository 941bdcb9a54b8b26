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
        if self.precision not in (Precision.FP32, Precision.FP16):
            raise UnsupportedError(f"the torch runner runs fp32 or fp16, not {self.precision.value}")
        if self.device.startswith("cuda") and not cuda_available():
            raise UnsupportedError("device 'cuda' asked for, but this torch build sees no CUDA GPU")
        self._module, self._weights = module, weights
        self._dtype = torch.float16 if self.precision is Precision.FP16 else torch.float32

    @property
    def runtime(self) -> str:
        kind = "cuda" if self.device.startswith("cuda") else "cpu"
        return f"torch-{kind}" + ("-fp16" if self.precision is Precision.FP16 else "")

    def _load(self):
        module = self._module if self._module is not None else self.spec.build(self._weights)
        self.module = module.to(self.device, self._dtype).eval()
        return self.spec.inputs, tuple(self.spec.output_names)

    def _infer(self, feed):
        if self.threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)  # process-wide in torch: documented in the README
        args = [torch.from_numpy(feed[t.name]).to(self.device, self._dtype) for t in self._inputs]
        # fp32 means fp32: cuDNN would otherwise run convs in TF32 (about 1e-3 relative error) on Ampere and newer
        tf32 = self.precision is not Precision.FP32
        with torch.inference_mode(), torch.backends.cudnn.flags(enabled=True, allow_tf32=tf32):
            outs = self.module(*args)
        outs = outs if isinstance(outs, (tuple, list)) else (outs,)
        return {name: o.float().cpu().numpy() for name, o in zip(self._outputs, outs)}

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def _close(self):
        self.module = None


def reference(spec: ModelSpec, weights=None, module: nn.Module | None = None) -> TorchRunner:
    """The CPU fp32 original: what parity is measured against."""
    return TorchRunner(spec, module=module, weights=weights, device="cpu")
