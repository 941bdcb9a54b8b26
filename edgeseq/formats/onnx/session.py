"""ONNX Runtime sessions: quiet construction, thread options, provider names; shared by the runner, the
exporters' probes and per-stage timing."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

from ..._lazy import require
from ...errors import UnsupportedError
from .options import EXTRA

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}
_PROVIDER_NAMES = {
    "TensorrtExecutionProvider": "tensorrt",
    "CUDAExecutionProvider": "cuda",
    "CPUExecutionProvider": "cpu",
}


def new_session(ort, model, options, providers):
    """ort.InferenceSession without onnxruntime's "EP Error ... Falling back and retrying" banner, which it prints
    to stdout when a session fails and it retries the same providers: the caller reports the error in one line."""
    with redirect_stdout(io.StringIO()):
        return ort.InferenceSession(model, sess_options=options, providers=providers)


def session_options(ort, threads: int | None):
    """The runner's session options: `threads` intra-op threads (None: onnxruntime's default), one inter-op thread
    (the graph is a chain), warnings and up. The stage profiler builds its session from these too."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


def load_error(exc: BaseException) -> str:
    """The first line of an onnxruntime error, loading or running a model (its message can itself be undecodable
    bytes)."""
    if isinstance(exc, UnicodeDecodeError):
        return "the file holds bytes that are not text where the model needs a name (corrupt or truncated?)"
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


# ---- runtime --------------------------------------------------------------------------------------------------------


def available_providers() -> list[str]:
    ort = require("onnxruntime", EXTRA)
    return list(ort.get_available_providers())


def providers_for(device: str | None) -> list[str]:
    """Auto (None): the best provider this onnxruntime build has; 'cpu' / 'cuda' / 'tensorrt' pick one."""
    have = available_providers()
    if device is None:
        order = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
        return [p for p in order if p in have]
    wanted = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
    provider = wanted.get(device.split(":")[0])
    if provider is None:
        raise UnsupportedError(f"unknown device {device!r} for onnxruntime; choose cpu, cuda or tensorrt")
    if provider not in have:
        raise UnsupportedError(
            f"this onnxruntime build has no {provider} (it has {', '.join(have)}); install onnxruntime-gpu for CUDA"
        )
    return [provider] + (["CPUExecutionProvider"] if provider != "CPUExecutionProvider" else [])


def runtime_devices() -> list[str]:
    """Devices this onnxruntime build can run on here, CPU first."""
    have = available_providers()
    return ["cpu"] + [d for d, p in (("cuda", "CUDAExecutionProvider"), ("tensorrt", "TensorrtExecutionProvider"))
                      if p in have]
