"""What a TFLite export takes: its options, precisions, the pip extra and the longest sequence it serves."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...enums import Precision
from ...errors import UnsupportedError

EXTRA = "tflite"
PRECISIONS = (Precision.FP32, Precision.FP16, Precision.INT8_DYNAMIC, Precision.INT8_STATIC)
DEFAULT_MAX_TIME = 8192  # frames (102 s at 80 frames/s); the loop has no limit, memory does
_SIGNATURE = "serving_default"
_LOOP_SCOPE = "LoopGRU"  # tensor names of the rewritten GRU (module scope), see rewrites.py
# Static int8 covers the ops inside convolution and pooling modules (tensor names carry the module scope: Conv1dAs2d,
# Conv2d, ConvBN, ConvBank, MaxPool, ShiftMaxPool); the quantizer matches this against an op's output names.
_INT8_STATIC_SCOPES = r"\.Conv[A-Za-z0-9]*_|MaxPool"

# What each precision does (reported in the artifact notes; measured in bench/bench_tflite.py).
_QUANT_NOTES = {
    Precision.FP16: "fp16 weights for FULLY_CONNECTED / CONV_2D / DEPTHWISE_CONV_2D (dequantized at load, fp32 "
                    "compute); the GRU recurrence (BATCH_MATMUL in the WHILE body) stays fp32",
    Precision.INT8_DYNAMIC: "int8 per-channel weights, activations quantized on the fly (dynamic range) for "
                            "FULLY_CONNECTED / CONV_2D / DEPTHWISE_CONV_2D; the GRU recurrence stays fp32",
    Precision.INT8_STATIC: "int8 per-channel weights and int8 activations (min-max calibrated on the spec's "
                           "real-speech calibration inputs) for the convolution front end only (conv bank, max pool, "
                           "projections); float32: the residual add and everything after it (highway, attention, "
                           "the GRU's input projection and its WHILE-loop recurrence, output linear) and the "
                           "model's input and output",
}


@dataclass(frozen=True)
class TfliteOptions:
    max_time: int = DEFAULT_MAX_TIME
    max_batch: int = 64
    calibration_samples: int = 8
    calibration_time: int = 200


def validate_precision(precision: Precision) -> None:
    if precision not in PRECISIONS:
        have = ", ".join(p.value for p in PRECISIONS)
        raise UnsupportedError(f"TFLite export at {precision.value} is not available (it has: {have})")


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def _why(exc: Exception) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    if exc.__cause__:
        text += "\n" + str(exc.__cause__)
    special = re.search(r"(Constraints violated|specialized it to be a constant[^\n]*|inferred a static shape[^\n]*)",
                        text)
    if special:
        return f"torch.export specialized a dynamic axis ({special.group(0)[:200]})"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


def _narrowed(declared: str | None, actual: str) -> tuple[str, str | None]:
    """(dtype the runner takes, dtype to cast to for the file): LiteRT's converter narrows int64 tensors to int32, so
    an int64 input (lengths, token ids) is taken as declared and cast on the way in (and out)."""
    if declared == "int64" and actual == "int32":
        return declared, actual
    return actual, None


# ---- quantization ---------------------------------------------------------------------------------------------------
