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
# GRU steps per call of a recurrence method (the method is unrolled): fewer calls (Python and delegate overhead per
# call) against a longer export and a larger working set. By default K = CHUNK_WORKING_SET // H within [8, 32]: 32
# for a BiGRU-64, 16 for a BiGRU-128, whose 32-step method measured slower than its 16-step one (the unrolled
# steps' values and the recurrent weights outgrow the core's cache). What is left under K steps runs in TAIL-step
# calls of a second method, so at most TAIL - 1 steps are wasted on padding; see docs/formats.md
CHUNK_WORKING_SET = 2048
DEFAULT_TAIL = 8
# How a CBHG's plain convolutions are written (rewrites.py): "direct", XNNPACK's convolution (no copies, every op
# delegated), or "im2col", one Linear over the k shifted input copies. The executorch 1.5.1 x86_64 wheel's f32
# convolution kernel runs 2-2.7x slower than its GEMM on AVX2-only CPUs, and level with it and with LiteRT's on
# AVX-512 (bench/bench_executorch_kernels.py), where im2col's copies made cbhg 1.4x slower end to end. None: direct,
# except int8-dynamic, whose quantizer takes linears only; see docs/formats.md
CONV_FORMS = ("direct", "im2col")


def default_chunk(hidden: int) -> int:
    return max(8, min(32, CHUNK_WORKING_SET // max(1, hidden)))


@dataclass(frozen=True)
class ExecutorchOptions:
    max_time: int = DEFAULT_MAX_TIME
    chunk: int | None = None  # None: default_chunk(hidden) for each GRU
    tail: int | None = DEFAULT_TAIL  # None: no tail method (the last chunk is a padded K-chunk)
    convs: str | None = None  # one of CONV_FORMS; None: conv_form(precision)

    def chunk_for(self, hidden: int) -> int:
        return self.chunk or default_chunk(hidden)

    def conv_form(self, precision: Precision) -> str:
        return self.convs or ("im2col" if precision is Precision.INT8_DYNAMIC else "direct")
