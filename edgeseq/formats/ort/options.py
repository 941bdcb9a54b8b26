"""What an .ort export takes: the ONNX export's options (the .ort is converted from that ONNX), and the extra."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..onnx.options import PRECISIONS as ONNX_PRECISIONS
from ..onnx.options import OnnxOptions

EXTRA = "onnx"  # onnx + onnxruntime: the converter and the runtime ship in the onnxruntime wheel
PRECISIONS = ONNX_PRECISIONS  # any precision the ONNX export makes, converted as it is
CONFIG_SUFFIX = ".operators.config"  # beside cbhg-lite.fp32.ort: cbhg-lite.fp32.ort.operators.config


@dataclass(frozen=True)
class OrtOptions:
    """`onnx`: how the source ONNX is exported (fp16 / int8 derive from an fp32 parent as in the ONNX format)."""

    onnx: OnnxOptions = field(default_factory=OnnxOptions)
