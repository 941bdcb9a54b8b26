"""What an ONNX export takes: its options, precisions and the pip extra; shared by convert, derive and runner."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

from ...enums import Precision
from ...errors import UnsupportedError

EXTRA = "onnx"
PRECISIONS = (Precision.FP32, Precision.FP16, Precision.INT8_DYNAMIC, Precision.INT8_STATIC)


class OnnxExporter(str, Enum):
    TORCHSCRIPT = "torchscript"
    DYNAMO = "dynamo"


@dataclass(frozen=True)
class OnnxOptions:
    opset: int = 17
    exporter: OnnxExporter = OnnxExporter.TORCHSCRIPT
    simplify: bool = True
    # fp16 / int8 only: a QuantConfig (None: the ONNX default for the precision, see edgeseq.quantize), feeds for
    # static calibration (None: the config's source), and an fp32 .onnx of the same model to derive from (None:
    # export one first; either way the derived artifact records the fp32 file's sha256 as its parent).
    quant: object | None = None
    calibration_data: tuple | None = field(default=None, compare=False, repr=False)
    parent: str | None = None


def validate_precision(precision: Precision) -> None:
    if precision not in PRECISIONS:
        have = ", ".join(p.value for p in PRECISIONS)
        raise UnsupportedError(f"ONNX export at {precision.value} is not available in this build (it has: {have})")


def _why(exc: Exception) -> str:
    """The informative line of a converter error (torch.export buries it under a generic preamble)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    for cause in (exc.__cause__,) if exc.__cause__ else ():
        text += "\n" + str(cause)
    specialized = re.search(r"inferred a static shape of (\d+) for dimension ([^\s]+)", text)
    if specialized:
        return (f"torch.export specialized a dynamic axis ({specialized.group(2).rstrip('.')} fixed to "
                f"{specialized.group(1)}); use the torchscript exporter, which keeps it dynamic")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]
