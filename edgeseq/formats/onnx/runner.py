"""OnnxRunner: an .onnx file on ONNX Runtime (CPU, CUDA or TensorRT provider)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..._lazy import require
from ...enums import Format
from ...errors import ArtifactError, RuntimeFailure
from ...runner import Runner
from ...tensors import TensorSpec
from .options import EXTRA
from .session import _ORT_TYPES, _PROVIDER_NAMES, load_error, new_session, providers_for, session_options


class OnnxRunner(Runner):
    format = Format.ONNX

    def __init__(self, path: str | Path, *, device: str | None = None, threads: int | None = None):
        super().__init__(device=device, threads=threads)
        self.path = Path(path)
        self._requested = device
        self.session = None
        self._stream = None  # a torch.cuda.Stream handed to the CUDA / TensorRT provider, where torch has CUDA
        self._device_id = int(device.split(":")[1]) if device and device.count(":") == 1 and \
            device.split(":")[1].isdigit() else 0

    @property
    def runtime(self) -> str:
        return f"onnxruntime-{self.device}"

    def _load(self):
        ort = require("onnxruntime", EXTRA)
        providers = providers_for(self._requested)
        if not self.path.is_file():
            raise ArtifactError(f"{str(self.path)!r} does not exist or is not a file")
        options = self._session_options(ort)
        self._stream, providers = _on_torch_stream(providers, self._device_id)
        try:
            self.session = new_session(ort, str(self.path), options, providers)
        except Exception as exc:
            raise ArtifactError(f"onnxruntime cannot load {str(self.path)!r}: {load_error(exc)}") from None
        self.device = _PROVIDER_NAMES.get(self.session.get_providers()[0], self.session.get_providers()[0])
        inputs = tuple(
            TensorSpec(i.name, tuple(d if isinstance(d, int) else d for d in i.shape), _ORT_TYPES.get(i.type, i.type))
            for i in self.session.get_inputs()
        )
        return inputs, tuple(o.name for o in self.session.get_outputs())

    def _session_options(self, ort):
        """The session options of load(); a subclass adds its own entries (the .ort runner names the file's format)."""
        return session_options(ort, self.threads)

    @property
    def metadata(self) -> dict[str, str]:
        self.load()
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def _infer(self, feed):
        try:
            outs = self.session.run(None, feed)
        except Exception as exc:
            raise RuntimeFailure(f"onnxruntime failed on {self.path.name}: {load_error(exc)}") from None
        return dict(zip(self._outputs, (np.asarray(o) for o in outs)))

    def timed_runs(self, feed, *, warmup: int, iterations: int, budget_s: float | None):
        """On the CUDA / TensorRT providers: inputs and outputs bound on the GPU once (IOBinding, no host copies in
        the loop), device time from CUDA events on the session's compute stream where torch has CUDA (the stream
        was handed to the provider at load), else the host clock around run_with_iobinding; the end-to-end p50 with
        host copies in the note, like the PyTorch CUDA rows. On the CPU: the end-to-end loop."""
        self.load()
        if self.device == "cpu":
            return super().timed_runs(feed, warmup=warmup, iterations=iterations, budget_s=budget_s)
        from ...latency import device_timings, time_locally
        from ...tensors import validate_feed

        samples, how = self._bound_times(validate_feed(self._inputs, feed), "cuda", warmup=warmup,
                                         iterations=iterations, budget_s=budget_s)
        e2e = time_locally(self, feed, warmup=1, iterations=max(5, len(samples) // 5), budget_s=budget_s)
        return device_timings(samples, e2e, how)

    def _bind(self, feed, device_type: str):
        """An IOBinding with the feed copied to `device_type` once and every output allocated there by ORT."""
        ort = require("onnxruntime", EXTRA)
        binding = self.session.io_binding()
        for name, value in feed.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value),
                                                                               device_type, self._device_id))
        for name in self._outputs:
            binding.bind_output(name, device_type, self._device_id)
        return binding

    def _bound_times(self, feed, device_type: str, *, warmup: int, iterations: int, budget_s: float | None,
                     events=None) -> tuple[list[float], str]:
        """(ms per run, how they were taken) of run_with_iobinding with the feed bound on `device_type` ('cuda' in
        the matrix; the tests bind 'cpu', which makes the same calls on the CPU provider, and pass stand-in
        `events`)."""
        from ...latency import cuda_event_times, host_times

        ort = require("onnxruntime", EXTRA)
        binding = self._bind(feed, device_type)
        run_options = ort.RunOptions()
        if self._stream is not None:  # the events order the work; ORT need not block the host after each run
            run_options.add_run_config_entry("disable_synchronize_execution_providers", "1")
            samples = cuda_event_times(lambda: self.session.run_with_iobinding(binding, run_options),
                                       stream=self._stream, warmup=warmup, iterations=iterations, budget_s=budget_s,
                                       events=events)
            return samples, ("device time from CUDA events on the session's compute stream, inputs and outputs "
                             "bound on the GPU (IOBinding)")
        # run_with_iobinding returns once the provider's stream is done: the host clock brackets the work
        samples = host_times(lambda: self.session.run_with_iobinding(binding, run_options), warmup=warmup,
                             iterations=iterations, budget_s=budget_s)
        return samples, (f"host clock around run_with_iobinding, inputs and outputs bound on {device_type} "
                         "(IOBinding; no torch with CUDA here to time with events)")

    def synchronize(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()

    def _close(self):
        self.session = None
        self._stream = None


def _on_torch_stream(providers: list[str], device_id: int) -> tuple[object, list]:
    """(stream, providers): where torch has CUDA, a new torch.cuda.Stream handed to the CUDA / TensorRT provider
    as its compute stream (`user_compute_stream`), so CUDA events recorded on it time exactly the session's work (a
    new stream: ORT treats torch's default stream, handle 0, as none). Else (None, providers) unchanged."""
    if providers[0] == "CPUExecutionProvider":
        return None, providers
    try:
        import torch
    except ImportError:
        return None, providers
    if not torch.cuda.is_available():
        return None, providers
    stream = torch.cuda.Stream(device=device_id)
    options = {"device_id": str(device_id), "user_compute_stream": str(stream.cuda_stream)}
    return stream, [(p, dict(options)) if p != "CPUExecutionProvider" else p for p in providers]


def runner(path, *, device=None, threads=None) -> OnnxRunner:
    return OnnxRunner(path, device=device, threads=threads)
