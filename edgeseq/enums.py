"""Formats and precisions are enums, never booleans or list positions."""

from __future__ import annotations

import enum

from .errors import UnknownNameError


class _Named(str, enum.Enum):
    @classmethod
    def parse(cls, value: "str | _Named"):
        if isinstance(value, cls):
            return value
        text = str(value).strip().lower()
        for member in cls:
            if member.value == text:
                return member
        names = ", ".join(m.value for m in cls)
        raise UnknownNameError(f"unknown {cls.__name__.lower()} {value!r}; choose one of: {names}")

    def __str__(self) -> str:
        return self.value


class Format(_Named):
    TORCH = "torch"
    ONNX = "onnx"
    TFLITE = "tflite"
    TENSORRT = "tensorrt"
    ORT = "ort"
    COREML = "coreml"
    EXECUTORCH = "executorch"


class Precision(_Named):
    FP32 = "fp32"
    FP16 = "fp16"
    INT8_DYNAMIC = "int8-dynamic"
    INT8_STATIC = "int8-static"


class GruKernel(_Named):
    """Who runs a fused CBHG's BiGRU: torch's nn.GRU (cuDNN on CUDA; "cudnn" is accepted for it), one persistent
    Triton kernel launch, "cuda": the hand-written CUDA kernel (edgeseq/kernels/cuda_gru.cu, compiled at run time by
    NVRTC), or "auto": per call, whichever of the three measured fastest for that dtype and hidden size."""

    TORCH = "torch"
    TRITON = "triton"
    AUTO = "auto"
    CUDA = "cuda"

    @classmethod
    def parse(cls, value: "str | GruKernel"):
        if isinstance(value, str) and value.strip().lower() == "cudnn":
            return cls.TORCH
        return super().parse(value)
