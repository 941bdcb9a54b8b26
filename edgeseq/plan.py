"""What the main job will do, decided and checked before any work: which exports (format x precision, each with
its options), which parity cases, where the files go. Built from CLI flags, API arguments or a recipe; run by
matrix.run_plan. A bad input of any kind fails here, so a run never stops half-way on something it could have known.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable

from . import formats
from ._checks import integer
from .enums import Format, Precision
from .errors import InputError
from .formats.contract import ExportSettings, setting_takers
from .models import ModelSpec
from .parity import Tolerances
from .resolve import (out_dir_arg, parity_feeds, refuse_overwriting_another_model, resolve_spec, resolve_tolerances,
                      weights_arg)

_INT8 = (Precision.INT8_DYNAMIC, Precision.INT8_STATIC)


@dataclasses.dataclass(frozen=True)
class MatrixOptions:
    times: tuple[int, ...] | None = None
    batches: tuple[int, ...] | None = None
    latency_time: int | None = None
    threads: int | None = None
    warmup: int = 5
    iterations: int = 30
    opset: int = 17
    exporter: str = "torchscript"
    tolerances: Tolerances | dict[str, float] | None = None  # None: the model's own; a dict: on top of them
    shapes: tuple[str, ...] | None = None  # TensorRT optimization profile overrides, NAME=MIN:OPT:MAX
    max_time: int | None = None  # TFLite, Core ML: the longest T the artifact serves (None: the format's default)
    quant: tuple[str, ...] = ()  # KEY=VALUE changes to the format's QuantConfig defaults, for every fp16 / int8 export
    calibration: str | None = None  # directory of .npy calibration inputs for int8-static (default: the model's own)
    bisect: bool = True  # a failing row is bisected at its worst case: the report names the first divergent layer
    rel_l2: tuple[tuple[str, float], ...] = ()  # (precision, rel L2) replacing that precision's tolerance (--tolerance)

    def __post_init__(self):
        """Bad timing settings fail here, not after the exports (iterations=0 used to fail at the first timing)."""
        for name, low in (("iterations", 1), ("warmup", 0), ("threads", 1), ("latency_time", 1)):
            optional = name in ("threads", "latency_time")
            object.__setattr__(self, name, integer(getattr(self, name), f"MatrixOptions.{name}", low, optional))


@dataclasses.dataclass(frozen=True)
class ExportStep:
    """One artifact to build: a format at a precision, with the settings it takes (the parent of a derived
    artifact is known only when the run has built the fp32 one)."""

    format: Format
    precision: Precision
    settings: ExportSettings

    def options(self, parent: Path | None = None):
        """The format's options object; `parent`: the fp32 file of the same format this run built, where the format
        derives from one."""
        fmt = formats.get(self.format)
        settings = self.settings
        if parent is not None and "parent" in fmt.settings:
            settings = dataclasses.replace(settings, parent=str(parent))
        return fmt.options(self.precision, settings)


@dataclasses.dataclass(frozen=True)
class MatrixPlan:
    spec: ModelSpec
    exports: tuple[ExportStep, ...]  # per format, fp32 first: fp16 / int8 derive from it and are measured against it
    feeds: tuple  # the parity sweep's (batch, T, source, feed) cases
    out_dir: Path
    weights: Path | None
    options: MatrixOptions  # tolerances resolved (the model's, a recipe's, then --tolerance)

    @property
    def formats(self) -> list[Format]:
        return list(dict.fromkeys(step.format for step in self.exports))

    @property
    def has_int8(self) -> bool:
        return any(step.precision in _INT8 for step in self.exports)


def _settings_for(fmt, precision: Precision, options: MatrixOptions) -> ExportSettings:
    """The matrix's settings a format takes: each passed only to the formats that declare it, quantization only to
    fp16 / int8 exports."""
    takes, derived = fmt.settings, precision is not Precision.FP32
    return ExportSettings(
        opset=options.opset, exporter=options.exporter,
        shapes=options.shapes if "shapes" in takes else None,
        max_time=options.max_time if "max_time" in takes else None,
        quant=(options.quant or None) if derived and "quant" in takes else None,
        calibration=options.calibration if derived and "calibration" in takes else None)


def _formats(formats_) -> list[Format]:
    formats_ = [formats_] if isinstance(formats_, (str, Format)) else list(formats_)
    if "all" in formats_:
        fmts = formats.installed_formats()
        if not fmts:
            raise InputError("no export format is installed; pip install 'edgeseq[onnx]' (or [tflite])")
        return fmts
    fmts = list(dict.fromkeys(Format.parse(f) for f in formats_))  # a repeated -f onnx is one export
    if Format.TORCH in fmts:
        raise InputError("torch is the reference every format is compared with; it is always in the matrix")
    return fmts


def _asks_all(formats_) -> bool:
    return "all" in ([formats_] if isinstance(formats_, (str, Format)) else list(formats_))


def plan_matrix(
    model,
    formats_: Iterable[str | Format] = (Format.ONNX,),
    precisions: Iterable[str | Precision] = (Precision.FP32,),
    *,
    out_dir: str | Path,
    weights: str | Path | None = None,
    options: MatrixOptions = MatrixOptions(),
    out_label: str = "out_dir",
) -> MatrixPlan:
    """Every check of the main job, in the order a user fixes them, before anything is built or written."""
    fmts = _formats(formats_)
    precisions = [precisions] if isinstance(precisions, (str, Precision)) else list(precisions)
    # "all" precisions: each format's own (TensorRT has no int8-dynamic); a precision named outright must be
    # supported by every format asked for
    every_precision = "all" in precisions
    precs = list(Precision) if every_precision else [Precision.parse(p) for p in precisions]
    if not fmts or not precs:
        raise InputError("give at least one format and one precision")
    # fp16 / int8 artifacts derive from the fp32 one, which is also their size and latency baseline: always built
    precs = [p for p in Precision if p in precs or (p is Precision.FP32 and precs)]
    if options.quant and precs == [Precision.FP32]:
        raise InputError("quantization settings (--quant) apply to fp16 / int8 precisions; none was asked for")
    if options.calibration is not None and Precision.INT8_STATIC not in precs:
        raise InputError("--calibration data is for int8-static; add -p int8-static")
    given = {"shapes": options.shapes, "max_time": options.max_time is not None, "quant": options.quant,
             "calibration": options.calibration is not None}
    for name in sorted(n for n, value in given.items() if value):  # a setting none of the formats takes
        if not any(name in formats.get(fmt).settings for fmt in fmts):
            raise InputError(f"{setting_takers(name)}; this run builds none")

    steps = []
    for fmt in fmts:  # unsupported precisions and bad settings fail before anything is written
        contract = formats.get(fmt)
        for prec in precs:
            if every_precision and prec not in contract.precisions:
                continue
            contract.validate_precision(prec)
            step = ExportStep(fmt, prec, _settings_for(contract, prec, options))
            step.options()
            steps.append(step)
    spec = resolve_spec(model)
    refused = {fmt: formats.get(fmt).refuses(spec) for fmt in fmts if formats.get(fmt).refuses(spec)}
    if refused and not _asks_all(formats_):  # asked for by name: one line before any work
        fmt, why = next(iter(refused.items()))
        raise InputError(f"{formats.get(fmt).title} cannot export {spec.name}: {why}")
    fmts = [fmt for fmt in fmts if fmt not in refused]  # -f all: the formats that can
    steps = [step for step in steps if step.format not in refused]
    weights = weights_arg(weights)  # weights=5 is an InputError, not a TypeError in the middle of the run
    # --tolerance (rel_l2) on top of the model's or the recipe's tolerances
    options = dataclasses.replace(options, tolerances=resolve_tolerances(spec, options.tolerances, options.rel_l2))
    fp32 = {step.format: step for step in steps if step.precision is Precision.FP32}
    for fmt in fmts:  # checks that need the model (a bad --shapes)
        formats.get(fmt).validate_plan(spec, fp32[fmt].options())
    if options.calibration is not None and Precision.INT8_STATIC in precs:
        from .quantize import load_calibration_dir

        load_calibration_dir(options.calibration, spec)
    out_dir = out_dir_arg(out_dir, out_label)
    for step in steps:  # a folder holding another model's artifacts under these names is refused before any work
        refuse_overwriting_another_model(out_dir / formats.get(step.format).artifact_name(spec.name, step.precision),
                                         spec)
    # the sweep is checked up front, against what the artifacts will serve (not at their parity check)
    limits: dict[str, int] = {}
    for fmt in fmts:
        for key, value in formats.get(fmt).sweep_limits(fp32[fmt].options()).items():
            limits[key] = min(value, limits.get(key, value))
    feeds = tuple(parity_feeds(spec, options.times, options.batches, None, **limits))
    return MatrixPlan(spec, tuple(steps), feeds, out_dir, weights, options)
