"""TensorRTRunner: an engine run with execute_async_v3 on a torch CUDA stream, torch tensors as buffers."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..._lazy import require
from ...enums import Format
from ...errors import ArtifactError, InputError, RuntimeFailure, UnsupportedError
from ...runner import Runner
from ...tensors import TensorSpec
from . import build
from .build import _logger, read_sidecar, sidecar_metadata, validate_sidecar
from .options import EXTRA, ShapeRange

# ---- runtime --------------------------------------------------------------------------------------------------------


def runtime_devices() -> list[str]:
    """['cuda'] where an engine can be built and run here (TensorRT + a CUDA GPU), else none."""
    return ["cuda"] if build.can_build()[0] else []


class TensorRTRunner(Runner):
    format = Format.TENSORRT

    def __init__(self, path: str | Path, *, device: str | None = None, threads: int | None = None):
        if device is not None and not (device.startswith("cuda") or device == "tensorrt"):
            raise UnsupportedError(f"TensorRT engines run on a CUDA GPU, not on {device!r}")
        super().__init__(device="cuda" if device in (None, "tensorrt") else device, threads=threads)
        self.path = Path(path)
        self._sidecar: dict | None = None
        self.engine = self.context = self._stream = None
        self._profile: dict[str, ShapeRange] = {}
        self._dtypes: dict[str, object] = {}

    @property
    def runtime(self) -> str:
        return "tensorrt-cuda"

    @property
    def metadata(self) -> dict[str, str]:
        return sidecar_metadata(self._sidecar if self._sidecar is not None else read_sidecar(self.path))

    def _load(self):
        if not self.path.is_file():
            raise ArtifactError(f"{str(self.path)!r} does not exist or is not a file")
        sidecar = read_sidecar(self.path)  # a malformed sidecar fails before anything heavy loads
        here = build.this_machine(self.device)  # MissingExtraError without TensorRT, UnsupportedError without a GPU
        if sidecar is not None:
            validate_sidecar(sidecar, here, self.path.name)
        self._sidecar = sidecar
        trt = require("tensorrt", EXTRA)
        import torch

        self._torch = torch
        self._device = torch.device(self.device)
        logger = self._logger = _logger(trt)  # TensorRT keeps a pointer to it: it must outlive the runtime
        self._trt_runtime = trt.Runtime(logger)
        engine = self._trt_runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            why = "; ".join(logger.errors[-2:]) or "no error message"
            raise ArtifactError(
                f"TensorRT {trt.__version__} cannot load {self.path.name} ({why[:200]}); engines only load with the "
                "TensorRT version and GPU that built them" + ("" if sidecar else " (this engine has no sidecar)")
            )
        self.engine = engine
        self.context = engine.create_execution_context()
        named = {t["name"]: t for t in (sidecar or {}).get("inputs", [])}
        inputs, outputs = [], []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            self._dtypes[name] = dtype
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                dims = tuple(engine.get_tensor_shape(name))
                axis_names = named.get(name, {}).get("shape", [None] * len(dims))
                shape = tuple(d if d >= 0 else (axis_names[k] if k < len(axis_names) and
                                                isinstance(axis_names[k], str) else None)
                              for k, d in enumerate(dims))
                inputs.append(TensorSpec(name, shape, dtype.name))
                lo, opt, hi = (tuple(s) for s in engine.get_tensor_profile_shape(name, 0))
                self._profile[name] = ShapeRange(lo, opt, hi)
            else:
                outputs.append(name)
        self._stream = torch.cuda.Stream(device=self._device)
        return tuple(inputs), tuple(outputs)

    def _bind(self, feed) -> tuple[list, dict]:
        """The feed copied to the GPU on the engine's stream, each input's shape set, outputs allocated, every
        address handed to the context: (input tensors, {output name: tensor}). Callers keep both alive until the
        enqueued work is done."""
        torch = self._torch
        for name, rng in self._profile.items():
            shape = tuple(feed[name].shape)
            if not rng.contains(shape):
                raise InputError(
                    f"input {name!r} has shape {list(shape)}, outside this engine's profile {rng.describe()}; "
                    f"rebuild with --shapes {name}=MIN:OPT:MAX to cover it"
                )
        held = []
        with torch.cuda.device(self._device), torch.cuda.stream(self._stream):
            for name in self._profile:
                tensor = torch.from_numpy(np.ascontiguousarray(feed[name])).to(self._device)
                held.append(tensor)
                if not self.context.set_input_shape(name, tuple(tensor.shape)):
                    raise InputError(f"TensorRT refused input shape {list(tensor.shape)} for {name!r}")
                self.context.set_tensor_address(name, tensor.data_ptr())
            outs = {}
            for name in self._outputs:
                shape = tuple(self.context.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise RuntimeFailure(f"output {name!r} has a data-dependent shape {list(shape)}, which this "
                                         "runner does not support")
                out = torch.empty(shape, dtype=_TORCH_DTYPES[self._dtypes[name].name](torch), device=self._device)
                self.context.set_tensor_address(name, out.data_ptr())
                outs[name] = out
        return held, outs

    def _enqueue(self, held: list) -> None:
        if not self.context.execute_async_v3(self._stream.cuda_stream):
            raise RuntimeFailure(f"TensorRT failed to run {self.path.name} at "
                                 f"{', '.join(f'{n}={list(t.shape)}' for n, t in zip(self._profile, held))}")

    def _infer(self, feed):
        torch = self._torch
        held, outs = self._bind(feed)
        with torch.cuda.device(self._device), torch.cuda.stream(self._stream):
            self._enqueue(held)
            host = {name: out.to("cpu") for name, out in outs.items()}
        self._stream.synchronize()
        return {name: t.float().numpy() if t.dtype == torch.float16 else t.numpy() for name, t in host.items()}

    def timed_runs(self, feed, *, warmup: int, iterations: int, budget_s: float | None):
        """Device time from CUDA events on the engine's stream after warm-up, the inputs bound once (as trtexec
        times an engine), and the end-to-end p50 with host copies in the note, like the PyTorch CUDA rows."""
        from ...latency import cuda_event_times, device_timings, time_locally
        from ...tensors import validate_feed

        self.load()
        held, outs = self._bind(validate_feed(self._inputs, feed))  # both stay alive while the timed work runs
        with self._torch.cuda.device(self._device):
            device = cuda_event_times(lambda: self._enqueue(held), stream=self._stream, warmup=warmup,
                                      iterations=iterations, budget_s=budget_s)
        e2e = time_locally(self, feed, warmup=1, iterations=max(5, len(device) // 5), budget_s=budget_s)
        return device_timings(device, e2e, "device time from CUDA events on the engine's stream, inputs already "
                                           "on the GPU")

    def synchronize(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()

    def _close(self):
        if self._stream is not None:
            self._stream.synchronize()
        self.context = self.engine = self._stream = None
        self._profile, self._dtypes = {}, {}


_TORCH_DTYPES: dict[str, Callable] = {
    "float32": lambda t: t.float32, "float16": lambda t: t.float16, "int32": lambda t: t.int32,
    "int64": lambda t: t.int64, "int8": lambda t: t.int8, "uint8": lambda t: t.uint8, "bool": lambda t: t.bool,
}


def runner(path, *, device=None, threads=None) -> TensorRTRunner:
    return TensorRTRunner(path, device=device, threads=threads)
