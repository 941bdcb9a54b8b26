"""What a TensorRT export takes (options, precisions, file names of its companions) and the shape ranges of its
optimization profile."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from ...enums import Precision
from ...errors import UnsupportedError

if TYPE_CHECKING:  # pragma: no cover
    from ..onnx import OnnxOptions

EXTRA = "tensorrt"
PRECISIONS = (Precision.FP32, Precision.FP16, Precision.INT8_STATIC)
DEFAULT_MAX_BATCH = 16  # the profile's largest batch unless the ModelSpec sweeps a larger one
DEFAULT_MAX_TIME = 1000  # the profile's longest sequence unless the ModelSpec sweeps a longer one
SIDECAR_SCHEMA = "edgeseq.tensorrt-engine/1"
PLAN_SCHEMA = "edgeseq.tensorrt-build/1"
TIMING_CACHE_NAME = "tensorrt.timing.cache"
ONNX_SUFFIX, PLAN_SUFFIX, SIDECAR_SUFFIX = ".trt.onnx", ".trt-build.json", ".json"
# the onnx-tensorrt operator table for TensorRT 10.0 documents opsets 9..20 (later 10.x releases add newer ones)
DOCUMENTED_OPSETS = (9, 20)
NO_ENGINE = "no TensorRT engine was built here"  # how a plan-only artifact's first note begins


class EngineBuild(str, Enum):
    AUTO = "auto"  # build the engine when TensorRT and a CUDA GPU are here, else write the plan only
    ALWAYS = "always"  # fail (MissingExtraError / UnsupportedError) when the engine cannot be built here
    NEVER = "never"  # plan only, even where TensorRT is installed (e.g. preparing a Jetson build)


@dataclass(frozen=True)
class ShapeRange:
    """One input's optimization-profile range: the engine accepts any shape between min and max per axis."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def to_dict(self) -> dict:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_dict(cls, d: dict) -> "ShapeRange":
        return cls(tuple(d["min"]), tuple(d["opt"]), tuple(d["max"]))

    def contains(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == len(self.min) and all(lo <= s <= hi for lo, s, hi in zip(self.min, shape, self.max))

    def describe(self) -> str:
        return "x".join(str(lo) if lo == hi else f"{lo}..{hi}" for lo, hi in zip(self.min, self.max))


@dataclass(frozen=True)
class TensorRTOptions:
    onnx: OnnxOptions | None = None  # OnnxOptions for the ONNX export (None: the ONNX exporter's defaults)
    shapes: dict[str, ShapeRange] | None = None  # overrides of the profile taken from the ModelSpec
    onnx_path: str | Path | None = None  # build from this ONNX instead of exporting one (e.g. a Q/DQ int8 model)
    timing_cache: str | Path | None = None  # default: tensorrt.timing.cache beside the engine
    workspace_mib: int | None = None  # builder workspace limit (None: TensorRT's default, the device's memory)
    engine: EngineBuild = EngineBuild.AUTO


# ---- export ---------------------------------------------------------------------------------------------------------


def validate_precision(precision: Precision, options: TensorRTOptions | None = None) -> None:
    precision = Precision.parse(precision)
    if precision not in PRECISIONS:
        have = ", ".join(p.value for p in PRECISIONS)
        raise UnsupportedError(f"TensorRT export at {precision.value} is not available (it has: {have}; int8 comes "
                               "from explicit Q/DQ nodes, there is no dynamic int8 in TensorRT)")
    if precision is Precision.INT8_STATIC and not (options and options.onnx_path):
        from .. import onnx as onnx_format

        if precision not in onnx_format.PRECISIONS:
            raise UnsupportedError(
                "TensorRT int8 engines are built from an ONNX with explicit Q/DQ nodes, and this build's ONNX "
                "exporter does not make int8-static yet (the quantization work); pass a Q/DQ ONNX with "
                "TensorRTOptions(onnx_path=...)"
            )


def companion_paths(engine_path: str | Path) -> dict[str, Path]:
    engine_path = Path(engine_path)
    stem = engine_path.name[: -len(engine_path.suffix)] if engine_path.suffix else engine_path.name
    return {
        "onnx": engine_path.with_name(stem + ONNX_SUFFIX),
        "plan": engine_path.with_name(stem + PLAN_SUFFIX),
        "sidecar": engine_path.with_name(engine_path.name + SIDECAR_SUFFIX),
    }


def quant_defaults() -> dict:
    """TensorRT parses explicit Q/DQ with signed, symmetric int8 only (zero point 0), and folds its own weights."""
    from ...quantize import Approach, CalibrationMethod, QuantConfig, QuantDtype, QuantFormat

    return {Approach.INT8_STATIC: QuantConfig(
        Approach.INT8_STATIC, weight_type=QuantDtype.INT8, activation_type=QuantDtype.INT8, per_channel=True,
        quant_format=QuantFormat.QDQ, calibration_method=CalibrationMethod.MINMAX, op_types=("Conv",))}
