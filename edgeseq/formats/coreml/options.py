"""What a Core ML export takes: its precisions (Core ML's compute precision), the pip extra, the longest T and the
largest batch its flexible input shapes serve."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

from ..._lazy import require
from ..._quiet import python_chatter_quiet
from ...enums import Precision

EXTRA = "coreml"
# the compute precision of the whole mlprogram: fp32 is ct.precision.FLOAT32, fp16 is ct.precision.FLOAT16 (Core ML's
# own default, and what the Neural Engine runs); inputs and outputs stay fp32 in both
PRECISIONS = (Precision.FP32, Precision.FP16)
DEFAULT_MAX_TIME = 8192  # frames (102 s at 80 frames/s), as TFLite: the while_loop has no limit, memory does
DEFAULT_MAX_BATCH = 64
SUFFIX = ".mlpackage"  # a folder (Manifest.json + Data/com.apple.CoreML/{model.mlmodel, weights/})
DEPLOYMENT_TARGET = "iOS16"  # the ct.target member converted for (iOS 16 / macOS 13): what the conversions were
                             # measured with; the converter's own mlprogram default is iOS 15
RUNTIME = "coreml"
MACOS_ONLY = ("Core ML prediction needs macOS (coremltools' MLModel.predict has no Core ML framework on "
              f"{sys.platform}); run it on a Mac, or through a device profile with runtime = \"coreml\" reaching a Mac "
              "over ssh")


@dataclass(frozen=True)
class CoremlOptions:
    """max_time / max_batch: the upper bounds of the ct.RangeDim given to the time and batch axes."""

    max_time: int = DEFAULT_MAX_TIME
    max_batch: int = DEFAULT_MAX_BATCH


def can_predict() -> bool:
    """Core ML runs only where its framework is: macOS (coremltools' predict is a stub elsewhere)."""
    return sys.platform == "darwin"


_QUIET = {"coremltools": logging.ERROR, "torch.jit": logging.ERROR}


def coremltools():
    """coremltools, imported quietly (its import prints torch-version and libcoremlpython warnings on Linux)."""
    with python_chatter_quiet(_QUIET):
        return require("coremltools", EXTRA, quiet=True)
