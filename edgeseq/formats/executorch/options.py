"""What an ExecuTorch export takes: its options, precisions, the pip extra and the longest sequence it serves."""

from __future__ import annotations

from dataclasses import dataclass

from ...enums import Precision
from .plan_exec import METADATA_METHOD, PLAN_KEY  # noqa: F401  (the plan's interpreter owns its keys)

EXTRA = "executorch"
PRECISIONS = (Precision.FP32, Precision.FP16, Precision.INT8_DYNAMIC, Precision.INT8_STATIC)  # precision.py: how
# ExecuTorch plans every activation buffer for the upper bound of T, so the bound costs memory: cbhg needs ~50 MB at
# 2048 frames (25.6 s at 80 frames/s). A longer input is refused with one line (re-export with a larger max_time).
DEFAULT_MAX_TIME = 2048
# GRU steps per call of a recurrence method: fewer calls (Python and delegate overhead per call) against more
# wasted steps in the last, padded chunk and a longer export (the method is unrolled); see docs/formats.md
DEFAULT_CHUNK = 8


@dataclass(frozen=True)
class ExecutorchOptions:
    max_time: int = DEFAULT_MAX_TIME
    chunk: int = DEFAULT_CHUNK
