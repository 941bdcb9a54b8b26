"""Quantization settings, per-format defaults, calibration data and the per-artifact quantization summary.

Format-neutral (numpy only): each format module applies a QuantConfig with its own tool (ONNX: onnxruntime.quantization
and onnxconverter-common's float16). The defaults below were picked from `bench/bench_quant.py`
(bench/results/quant-sweep.json); docs/tolerances.md and docs/quantization.md summarize why.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

from .enums import Precision, _Named
from .errors import InputError, UnsupportedError

if TYPE_CHECKING:  # pragma: no cover
    from .models.spec import ModelSpec


class Approach(_Named):
    FP16 = "fp16"
    INT8_DYNAMIC = "int8-dynamic"  # weights int8 offline, activation ranges computed per call
    INT8_STATIC = "int8-static"  # weights and activations int8, activation ranges calibrated offline

    @classmethod
    def for_precision(cls, precision: Precision | str) -> "Approach":
        precision = Precision.parse(precision)
        if precision is Precision.FP32:
            raise UnsupportedError("fp32 is the original precision; it has no quantization approach")
        return cls(precision.value)


class QuantDtype(_Named):
    INT8 = "int8"
    UINT8 = "uint8"


class QuantFormat(_Named):
    QDQ = "qdq"  # QuantizeLinear / DequantizeLinear around float ops; the runtime fuses them
    QOPERATOR = "qoperator"  # QLinearConv, QLinearMatMul, ...: integer ops written into the graph


class CalibrationMethod(_Named):
    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


class GruExport(_Named):
    FUSED = "fused"  # one GRU op (x_t W_ih inside it): the runtime's fused kernel, left float by ORT's quantizer
    HOISTED = "hoisted"  # x_t W_ih for all t as one MatMul before the GRU op, so the quantizer can take it


SPEC_CALIBRATION = "spec"  # the model's own calibration inputs (real speech where the model takes it)
USER_CALIBRATION = "user"  # an iterable of feeds handed to the API


@dataclass(frozen=True)
class QuantConfig:
    """How one artifact is quantized. Enums, not flags; `op_types=()` means "what the tool quantizes by default"."""

    approach: Approach
    weight_type: QuantDtype = QuantDtype.INT8
    activation_type: QuantDtype = QuantDtype.UINT8
    per_channel: bool = True
    reduce_range: bool = False  # 7-bit weights: what x86 u8s8 kernels without VNNI need to never saturate
    quant_format: QuantFormat = QuantFormat.QDQ
    calibration_method: CalibrationMethod = CalibrationMethod.MINMAX
    calibration: str = SPEC_CALIBRATION  # "spec", "user" or the directory of .npy files it came from
    calibration_samples: int = 8
    calibration_time: int = 200
    op_types: tuple[str, ...] = ()  # op types the quantizer may take (ONNX names); () = the tool's default set
    weight_only: tuple[str, ...] = ()  # op types left float whose constant weights are stored int8 anyway
    gru: GruExport = GruExport.FUSED

    def __post_init__(self) -> None:
        for name, kind in _ENUM_FIELDS.items():
            object.__setattr__(self, name, kind.parse(getattr(self, name)))
        object.__setattr__(self, "op_types", tuple(self.op_types))
        object.__setattr__(self, "weight_only", tuple(self.weight_only))
        if self.calibration_samples < 1 or self.calibration_time < 1:
            raise InputError("calibration_samples and calibration_time must be >= 1")

    @property
    def is_int8(self) -> bool:
        return self.approach is not Approach.FP16

    def replace(self, **changes) -> "QuantConfig":
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            names = ", ".join(f.name for f in dataclasses.fields(self) if f.name != "approach")
            raise InputError(f"unknown quantization setting(s) {unknown}; choose from: {names}")
        return dataclasses.replace(self, **changes)

    def with_overrides(self, items: Iterable[str]) -> "QuantConfig":
        """Apply CLI-style `KEY=VALUE` overrides, e.g. weight_type=uint8, per_channel=false, op_types=Conv,MatMul."""
        changes = {}
        for item in items:
            key, sep, value = item.partition("=")
            key, value = key.strip().replace("-", "_"), value.strip()
            if not sep or not key:
                raise InputError(f"bad --quant {item!r}: expected KEY=VALUE, e.g. weight_type=uint8")
            changes[key] = _parse_value(key, value, item)
        return self.replace(**changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for name in _ENUM_FIELDS:
            d[name] = getattr(self, name).value
        d["op_types"], d["weight_only"] = list(self.op_types), list(self.weight_only)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "QuantConfig":
        return cls(**{k: v for k, v in d.items() if k in {f.name for f in dataclasses.fields(cls)}})

    def label(self) -> str:
        """A short human label for tables, e.g. 'int8-static qdq w:int8 a:uint8 per-channel minmax Conv'."""
        if self.approach is Approach.FP16:
            return "fp16"
        parts = [self.approach.value]
        if self.approach is Approach.INT8_STATIC:
            parts += [self.quant_format.value]
        parts += [f"w:{self.weight_type.value}"]
        if self.approach is Approach.INT8_STATIC:
            parts += [f"a:{self.activation_type.value}"]
        parts += ["per-channel" if self.per_channel else "per-tensor"]
        if self.reduce_range:
            parts += ["reduce-range"]
        if self.approach is Approach.INT8_STATIC:
            parts += [self.calibration_method.value]
        parts += ["+".join(self.op_types) if self.op_types else "all-ops"]
        if self.weight_only:
            parts += ["weight-only:" + "+".join(self.weight_only)]
        if self.gru is not GruExport.FUSED:
            parts += [f"gru:{self.gru.value}"]
        return " ".join(parts)


_ENUM_FIELDS = {
    "approach": Approach,
    "weight_type": QuantDtype,
    "activation_type": QuantDtype,
    "quant_format": QuantFormat,
    "calibration_method": CalibrationMethod,
    "gru": GruExport,
}


def _parse_value(key: str, value: str, item: str):
    if key in ("per_channel", "reduce_range"):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise InputError(f"bad --quant {item!r}: {key} is true or false")
    if key in ("calibration_samples", "calibration_time"):
        try:
            return int(value)
        except ValueError:
            raise InputError(f"bad --quant {item!r}: {key} is an integer") from None
    if key in ("op_types", "weight_only"):
        names = tuple(v for v in value.replace(" ", "").split(",") if v)
        keyword = {"op_types": "all", "weight_only": "none"}[key]
        if names == (keyword,):
            return ()  # op_types=all: every op the quantizer takes; weight_only=none: no weight-only storage
        if not names:
            raise InputError(f"bad --quant {item!r}: name op types (e.g. {key}=Conv,MatMul), or {key}={keyword}")
        return names
    if key in _ENUM_FIELDS:
        return _ENUM_FIELDS[key].parse(value)
    return value


def apply_quant(base: QuantConfig, quant=None) -> QuantConfig:
    """`base` (a format's default) with `quant` on top: a QuantConfig for the same approach, a dict of changes or
    KEY=VALUE strings."""
    if quant is None:
        return base
    if isinstance(quant, QuantConfig):
        if quant.approach is not base.approach:
            raise InputError(f"a {quant.approach.value} QuantConfig was given for precision {base.approach.value}")
        return quant
    if isinstance(quant, dict):
        parsed = {k: _parse_value(k, v, f"{k}={v}") if isinstance(v, str) else v for k, v in quant.items()}
        return base.replace(**parsed)
    if isinstance(quant, (list, tuple, str)):
        return base.with_overrides([quant] if isinstance(quant, str) else quant)
    raise InputError(f"quant must be a QuantConfig, a dict or KEY=VALUE strings, not {type(quant).__name__}")


# ---- which CPUs an int8 artifact holds on ---------------------------------------------------------------------------

EVERY_CPU = "any"
INT8_CPUS_KEY = "edgeseq.int8_cpus"  # artifact metadata: int8 kernel families its integer kernels are exact on
QUANTIZED_ON_KEY = "edgeseq.quantized_on"  # artifact metadata: the int8 kernel family of the CPU that calibrated it
VALIDATED_ON_KEY = "edgeseq.validated_on"  # artifact metadata: JSON of where its parity passed (matrix, host CPU)


def int8_cpu_note(meta: dict, cpu: dict) -> str:
    """A parity note when an int8 artifact runs on a CPU its format says its integer kernels can saturate on:
    the same file passes where it was built and fails here, and the row should say why."""
    safe = [s for s in str(meta.get(INT8_CPUS_KEY, "")).split(",") if s]
    isa = cpu.get("int8_isa")
    if not safe or not isa or EVERY_CPU in safe or isa in safe:
        return ""
    return (f"int8 kernels: this artifact is exact on {', '.join(safe)} CPUs; this one is {isa}, where its 8-bit "
            f"signed weights can saturate the integer products (re-export with the default settings, safe on "
            f"every CPU)")


# ---- calibration data -----------------------------------------------------------------------------------------------


def load_calibration_dir(path: str | Path, spec: "ModelSpec") -> list[dict[str, np.ndarray]]:
    """Feeds from a directory of .npy files (`--calibration DIR`).

    One input: every `*.npy` is one sample, shaped like the input with or without the batch axis (e.g. [T, 128] or
    [1, T, 128] for cbhg). Several inputs: files are named `<input>.<sample>.npy` and grouped by sample. Arrays
    must be floating point (cast to the input's dtype) and finite; files are read with allow_pickle=False.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"--calibration {str(path)!r} does not exist")
    if not path.is_dir():
        raise InputError(f"--calibration {str(path)!r} is not a directory of .npy files")
    files = sorted(p for p in path.iterdir() if p.suffix == ".npy" and p.is_file())
    if not files:
        raise InputError(f"--calibration {str(path)!r} holds no .npy files")
    names = spec.input_names
    samples: dict[str, dict[str, Path]] = {}
    for f in files:
        if len(names) == 1:
            samples[f.stem] = {names[0]: f}
            continue
        head, _, sample = f.stem.partition(".")
        if head not in names or not sample:
            raise InputError(f"calibration file {f.name!r}: with several inputs name files <input>.<sample>.npy, "
                             f"where <input> is one of {names}")
        samples.setdefault(sample, {})[head] = f
    feeds = []
    for sample, by_name in sorted(samples.items()):
        missing = [n for n in names if n not in by_name]
        if missing:
            raise InputError(f"calibration sample {sample!r} in {str(path)!r} lacks input(s) {missing}")
        feed = {}
        for name in names:
            with open(by_name[name], "rb") as fh:
                if fh.read(6) != b"\x93NUMPY":  # else numpy blames allow_pickle for any garbage
                    raise InputError(f"calibration file {by_name[name].name!r} is not a readable .npy array: it "
                                     "does not start with the .npy header (write it with numpy.save)")
            try:
                array = np.load(by_name[name], allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise InputError(f"calibration file {by_name[name].name!r} is not a readable .npy array: "
                                 f"{str(exc).splitlines()[0][:300]}") from None
            feed[name] = array
        feeds.append(validate_calibration_feed(feed, spec, where=f"calibration file(s) for sample {sample!r}"))
    return feeds


def validate_calibration_feed(feed, spec: "ModelSpec", where: str = "calibration sample") -> dict[str, np.ndarray]:
    """One feed checked against the model's inputs: names, rank (a missing batch axis is added), fixed dims, dtype."""
    if not isinstance(feed, dict):
        raise InputError(f"{where}: expected a dict of input name -> array, got {type(feed).__name__}")
    if sorted(feed) != sorted(spec.input_names):
        raise InputError(f"{where}: names {sorted(feed)} do not match the model inputs {spec.input_names}")
    out = {}
    for t in spec.inputs:
        array = np.asarray(feed[t.name])
        if array.dtype.kind != "f":
            raise InputError(f"{where}: input {t.name!r} has dtype {array.dtype}; calibration data must be floating "
                             f"point ({t.dtype}) features, not raw samples or labels")
        if array.ndim == len(t.shape) - 1:
            array = array[None]
        if array.ndim != len(t.shape) or any(isinstance(d, int) and d != n for d, n in zip(t.shape, array.shape)):
            want = " x ".join(str(d) for d in t.shape)
            raise InputError(f"{where}: input {t.name!r} has shape {list(np.shape(feed[t.name]))}, expected "
                             f"({want}) (the batch axis may be left out)")
        if 0 in array.shape:
            raise InputError(f"{where}: input {t.name!r} has an empty axis (shape {list(array.shape)})")
        if not np.isfinite(array).all():
            raise InputError(f"{where}: input {t.name!r} contains NaN or Inf")
        out[t.name] = np.ascontiguousarray(array, dtype=t.dtype)
    return out


def calibration_feeds(spec: "ModelSpec", config: QuantConfig, data=None) -> list[dict[str, np.ndarray]]:
    """What the calibrator sees: user feeds (API), a .npy directory (config.calibration) or the spec's own inputs."""
    if data is not None:
        feeds = [validate_calibration_feed(f, spec, where=f"calibration_data[{i}]") for i, f in enumerate(data)]
        if not feeds:
            raise InputError("calibration_data is empty")
        return feeds
    if config.calibration not in (SPEC_CALIBRATION, USER_CALIBRATION):
        return load_calibration_dir(config.calibration, spec)
    time = config.calibration_time if spec.has_dynamic_time else None
    return list(spec.calibration_inputs(config.calibration_samples, time))


# ---- the per-artifact summary a report carries ----------------------------------------------------------------------


@dataclass(frozen=True)
class QuantSummary:
    """One quantized artifact on one runtime, against its fp32 parent (and PyTorch's own int8 where it has one)."""

    artifact: str
    precision: str
    runtime: str
    config: dict
    size_bytes: int
    fp32_size_bytes: int | None
    p50_ms: float | None
    fp32_p50_ms: float | None
    max_abs: float  # worst over every parity case and output, against the PyTorch fp32 original
    rel_l2: float
    cosine: float
    snr_db: float
    float_ops: dict[str, int] = field(default_factory=dict)  # op types that still compute in float, with counts
    quantized_ops: dict[str, int] = field(default_factory=dict)
    torch_int8_rel_l2: float | None = None  # PyTorch's own int8 (torch.ao dynamic) on the same cases
    torch_int8_max_abs: float | None = None

    @property
    def size_ratio(self) -> float | None:
        return self.size_bytes / self.fp32_size_bytes if self.fp32_size_bytes else None

    @property
    def latency_ratio(self) -> float | None:
        return self.p50_ms / self.fp32_p50_ms if (self.p50_ms and self.fp32_p50_ms) else None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["size_ratio"], d["latency_ratio"] = self.size_ratio, self.latency_ratio
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "QuantSummary":
        return cls(**{k: v for k, v in d.items() if k in {f.name for f in dataclasses.fields(cls)}})


def worst_errors(parity) -> dict[str, float]:
    """Worst of each error measure over every case and output of a ParityResult (or its dict)."""
    cases = parity["cases"] if isinstance(parity, dict) else [c.to_dict() for c in parity.cases]
    outs = [o for c in cases for o in c["outputs"]]
    pick = lambda key, fn, default: fn((o[key] for o in outs if o[key] == o[key]), default=default)  # noqa: E731
    return {
        "max_abs": pick("max_abs", max, math.nan),
        "rel_l2": pick("rel_l2", max, math.nan),
        "cosine": pick("cosine", min, math.nan),
        "snr_db": pick("snr_db", min, math.nan),
    }
