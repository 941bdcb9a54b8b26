"""The Python API for app pipelines; the CLI calls exactly these functions."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np

from . import formats
from ._checks import integer, integers, is_integer, texts
from .artifact import Artifact
from .enums import Format, Precision
from .errors import EdgeseqError, InputError, UnknownNameError, UnsupportedError
from .models import ModelSpec, get_model
from .parity import ParityCase, ParityResult, Tolerances, check_rel_l2, sweep
from .quantize import int8_cpu_note
from .latency import LatencyResult, measure
from .runner import Runner

if TYPE_CHECKING:  # pragma: no cover
    from .devices import DeviceProfile

SUFFIX = {Format.ONNX: ".onnx", Format.TFLITE: ".tflite", Format.TENSORRT: ".engine"}


# ---- argument checks: the API's callers are programs, so a wrong type is an InputError too, never a TypeError ------
# (the rules themselves live in _checks, shared with MatrixOptions, recipes and the runners)

def _path(value, what: str) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise InputError(f"{what} must be a path (str or os.PathLike), got {value!r}")
    return Path(value)


def _weights(value) -> Path | None:
    """weights=: None (the model's seeded weights) or a checkpoint path; anything else is refused before the work."""
    return None if value is None else _path(value, "weights")


def _out_dir(value, what: str = "out_dir") -> Path:
    """The export folder: a path that is a folder or can become one (checked before any export work); `what` is
    what an error calls it ("--out" from the CLI)."""
    from .artifact import check_output_dir

    path = _path(value, what)
    check_output_dir(path, what)
    return path


def resolve_spec(
    model,
    example_inputs=None,
    input_names: list[str] | None = None,
    output_names: list[str] | None = None,
    dynamic_axes: dict | None = None,
) -> ModelSpec:
    """A registered name, a ModelSpec, or any torch.nn.Module with example inputs."""
    if isinstance(model, (str, ModelSpec)):
        return get_model(model)
    import torch

    if isinstance(model, torch.nn.Module):
        if example_inputs is None:
            raise InputError("a bare torch.nn.Module needs example_inputs (a tensor, tuple or dict of them), or pass "
                             "a ModelSpec: edgeseq.ModelSpec.from_module(module, example_inputs, ...)")
        return ModelSpec.from_module(model, example_inputs, input_names, output_names, dynamic_axes)
    raise InputError(f"model must be a registered name, a ModelSpec or a torch.nn.Module, not {type(model).__name__}")


def artifact_name(spec: ModelSpec, fmt: Format, precision: Precision) -> str:
    return f"{spec.name}.{precision.value}{SUFFIX[fmt]}"


def export(
    model,
    format: str | Format = Format.ONNX,
    *,
    out_dir: str | Path,
    precision: str | Precision = Precision.FP32,
    example_inputs=None,
    input_names: list[str] | None = None,
    output_names: list[str] | None = None,
    dynamic_axes: dict | None = None,
    weights: str | Path | None = None,
    opset: int = 17,
    exporter: str = "torchscript",
    max_time: int | None = None,
    shapes=None,
    quant=None,
    calibration_data: Iterable[dict[str, np.ndarray]] | None = None,
    calibration: str | Path | None = None,
    parent: str | Path | Artifact | None = None,
) -> Artifact:
    """Convert only (no parity, no latency): returns the Artifact written atomically into out_dir.

    `max_time` (TFLite): the longest sequence the artifact serves; longer inputs are refused, never cropped.
    `shapes` (TensorRT only) overrides the optimization profile taken from the model: NAME=MIN:OPT:MAX strings
    (e.g. "features=1x1x128:1x200x128:16x1000x128") or {name: (min, opt, max)}. Without TensorRT on this machine a
    TensorRT export writes the ONNX and the build plan (trtexec command) and says so in the Artifact's notes.
    ONNX fp16 / int8 artifacts are derived from an fp32 export (`parent`, or a fresh one): `quant` adjusts the
    default QuantConfig (a QuantConfig, a dict or KEY=VALUE strings, see edgeseq.quantize); int8-static calibrates
    on `calibration_data` (an iterable of input dicts), a directory of .npy files (`calibration`) or, by default,
    the model's own real-speech calibration inputs.
    """
    fmt, precision = Format.parse(format), Precision.parse(precision)
    if fmt is Format.TORCH:
        raise UnsupportedError("torch is the reference, not an export format; choose onnx or tflite")
    if max_time is not None and fmt is not Format.TFLITE:
        raise InputError(f"max_time applies to TFLite exports (the longest T they serve); {fmt.value} serves any T")
    out_dir = _out_dir(out_dir)
    weights = _weights(weights)
    spec = resolve_spec(model, example_inputs, input_names, output_names, dynamic_axes)
    module = formats.module_for(fmt)
    module.check_precision(precision)
    out = out_dir / artifact_name(spec, fmt, precision)
    refuse_overwriting_another_model(out, spec)
    options = _options(module, opset, exporter, shapes, max_time, precision=precision, quant=quant,
                       calibration=calibration, calibration_data=calibration_data, parent=parent)
    return module.export(spec, out, precision=precision, options=options, weights=weights)


def refuse_overwriting_another_model(path: Path, spec: ModelSpec) -> None:
    """Two user models that share a class name (and so an artifact name) must not overwrite each other's files: an
    artifact already there from another model (name or factory) is an InputError before any work."""
    if not path.is_file():
        return
    try:
        meta = formats.read_metadata(path)
    except EdgeseqError:
        return  # not an edgeseq artifact we can read: an export replaces it as before
    theirs = (meta.get("edgeseq.model"), meta.get("edgeseq.source", ""))
    if theirs[0] is not None and theirs != (spec.name, spec.source):
        source = f" from {theirs[1]}" if theirs[1] else ""
        raise InputError(f"{path} holds model {theirs[0]!r}{source}, not this one ({spec.name!r}): export into another "
                         "folder, or name the model (ModelSpec.from_module(..., name=...))")


def _options(module, opset: int, exporter: str, shapes=None, max_time: int | None = None, *,
             precision=Precision.FP32, quant=None, calibration=None, calibration_data=None, parent=None):
    """The format's options object from the API's flat arguments; settings that do not apply are errors."""
    from .formats import onnx as onnx_format

    kind_name = module.__name__.rpartition(".")[2]
    opset = integer(opset, "opset")
    max_time = integer(max_time, "max_time", optional=True)
    if isinstance(shapes, str):
        shapes = [shapes]  # one NAME=MIN:OPT:MAX, not its characters
    if shapes and kind_name != "tensorrt":
        raise InputError("--shapes sets a TensorRT optimization profile; it applies to --format tensorrt only")
    if kind_name != "onnx" and (quant or calibration is not None or calibration_data is not None):
        raise InputError(f"--quant and --calibration apply to ONNX exports; {kind_name} uses its own defaults")
    if kind_name == "tflite":
        return module.TfliteOptions() if max_time is None else module.TfliteOptions(max_time=max_time)
    if kind_name in ("onnx", "tensorrt"):
        try:
            kind = onnx_format.OnnxExporter(exporter)
        except ValueError:
            raise InputError(f"unknown exporter {exporter!r}; choose torchscript or dynamo") from None
        if kind_name == "tensorrt":
            onnx_options = onnx_format.OnnxOptions(opset=opset, exporter=kind)
            return module.TensorRTOptions(onnx=onnx_options, shapes=module.parse_profile(shapes) or None)
        config = None
        precision = Precision.parse(precision)
        if precision is not Precision.FP32:
            from .quantize import resolve_config

            config = resolve_config(Format.ONNX, precision, quant)
            if calibration is not None and precision is Precision.INT8_STATIC:
                config = config.replace(calibration=str(calibration))
        elif quant or calibration is not None or calibration_data is not None:
            raise InputError("quantization settings and calibration data apply to fp16 / int8 exports, not fp32")
        data = tuple(calibration_data) if calibration_data is not None else None
        if isinstance(parent, Artifact):
            parent = parent.path
        if parent is not None:
            parent = _path(parent, "parent")
        return module.OnnxOptions(opset=opset, exporter=kind, quant=config, calibration_data=data,
                                  parent=str(parent) if parent else None)
    return None


def load(path: str | Path | Artifact, *, device=None, threads: int | None = None) -> Runner:
    """A runner for any artifact file, picked from the file itself (works on any ONNX model, not only ours).

    device: a plain runner device (cpu, cuda, tensorrt), a device profile name or .toml path, or a DeviceProfile;
    a profile reached over ssh / adb gives a runner that runs on that device (parity is still computed here)."""
    return _open_runner(path, device=device, threads=threads)


def _device_profile(device) -> "DeviceProfile | None":
    """device= as a DeviceProfile (a profile name, a .toml path or a DeviceProfile), or None for a plain runner
    device (cpu, cuda, tensorrt)."""
    from .devices import DeviceProfile, resolve_device

    if device is None or isinstance(device, DeviceProfile):
        return device
    if not isinstance(device, (str, os.PathLike)):
        raise InputError(f"device must be cpu, cuda, tensorrt, a device profile name or .toml path, or a "
                         f"DeviceProfile; got {device!r}")
    return resolve_device(str(device))


def _runner_for(artifact, device, threads, what: str, timing_only: bool = False
                ) -> "tuple[Runner, bool, DeviceProfile | None]":
    """(runner, owned, device profile) for check / profile: an open Runner as given (owned False: the caller keeps
    it, and device= / threads= cannot apply), else the artifact opened here on `device`."""
    if isinstance(artifact, Runner):
        if device is not None or threads is not None:
            raise InputError(f"device= and threads= apply when {what} opens the artifact; this Runner is already "
                             "open")
        return artifact, False, None
    profile = _device_profile(device)
    return _open_runner(artifact, device=profile or device, threads=threads, timing_only=timing_only), True, profile


def _open_runner(path, *, device=None, threads: int | None = None, timing_only: bool = False) -> Runner:
    if isinstance(path, Artifact):
        path = path.path
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise InputError(f"the artifact must be a path, an Artifact or a Runner, got {path!r}")
    threads = integer(threads, "threads", optional=True)
    profile = _device_profile(device)
    if profile is None:
        return formats.runner_for(path, device=device and str(device), threads=threads)
    if profile.local:
        profile.check_local(formats.detect_format(path))
        return formats.runner_for(path, device=profile.runner_device(), threads=threads or profile.threads)
    from .remote import runner_for

    return runner_for(path, profile, threads=threads, timing_only=timing_only)


def parity_feeds(spec: ModelSpec, times: Iterable[int] | int | None, batches: Iterable[int] | int | None,
                 sources: Iterable[str] | str | None, *, max_time: int | None = None, max_batch: int | None = None):
    """The sweep's (batch, T, source, feed) cases, all checked first; max_time / max_batch: what the artifact
    serves (a TFLite artifact's export bounds), so a sweep past them is refused, not reported as failures."""
    times = integers(times, "times") or (spec.time_sweep if spec.has_dynamic_time else (spec.default_time,))
    batches = integers(batches, "batches") or spec.batch_sweep
    sources = texts(sources, "sources") or spec.sources
    if not spec.has_dynamic_time and set(times) != {spec.default_time}:
        raise InputError(f"{spec.name} has a fixed time axis of {spec.default_time}; it cannot be checked at {times}")
    for limit, values, what, option in ((max_time, times, "T", "max_time"), (max_batch, batches, "batch", "max_batch")):
        if limit is not None and max(values) > limit:
            raise InputError(f"the artifact serves {what} up to {limit}; the sweep asks for {what}={max(values)} "
                             f"(check smaller values, or re-export with a larger {option})")
    for source in sources:
        if source not in spec.sources:
            raise InputError(f"input source {source!r} is not available for {spec.name}; choose from {spec.sources}")
    seed = 0
    for t in times:
        for b in batches:
            for source in sources:
                yield b, t, source, spec.example_inputs(batch=b, time=t, source=source, seed=seed)
                seed += 1


def meta_of(runner: Runner) -> dict[str, str]:
    """The artifact's edgeseq metadata where its runner reads one ({} for a torch runner)."""
    return getattr(runner, "metadata", {}) if hasattr(runner, "metadata") else {}


def _model_of(runner: Runner, model) -> ModelSpec:
    """The artifact's model: `model` where given (needed for files without edgeseq metadata), else the artifact's
    own; a `model` that contradicts the artifact's metadata is refused (its outputs could never match)."""
    if getattr(runner, "spec", None) is not None and model is None:
        return runner.spec
    name = meta_of(runner).get("edgeseq.model")
    if model is not None:
        spec = resolve_spec(model)
        if name and name != spec.name:
            raise InputError(f"the artifact is {name}, but the model given is {spec.name}; leave it out or give {name}")
        return spec
    if not name:
        raise InputError("this artifact carries no edgeseq model name; say which model it is (--model NAME)")
    source = meta_of(runner).get("edgeseq.source")
    if source:  # a user model: its factory, where the export recorded it
        try:
            spec = get_model(source)
        except InputError as exc:
            raise InputError(f"the artifact is user model {name!r} from {source}, which does not load here ({exc}); "
                             "give its factory with --model FILE.py:FACTORY") from None
        if spec.name == name:
            return spec
    try:
        return get_model(name)
    except UnknownNameError:
        raise InputError(f"the artifact is model {name!r}, which is not registered here: give its factory with "
                         "--model FILE.py:FACTORY (API: model=ModelSpec)") from None


def _frame_rate(runner: Runner, model) -> float | None:
    """The model's frame rate for the real-time factor; None (no RTF) where the model declares none or is unknown."""
    try:
        return _model_of(runner, model).frames_per_second
    except EdgeseqError:
        return None


def _limits(runner: Runner) -> dict[str, int | None]:
    """The longest T and largest batch the artifact serves, where it declares them (TFLite exports do)."""
    meta = meta_of(runner)
    out = {}
    for key in ("max_time", "max_batch"):
        value = meta.get(f"edgeseq.{key}")
        out[key] = int(value) if str(value or "").isdigit() else None
    return out


def resolve_tolerances(spec: ModelSpec, tolerances: Tolerances | dict[str, float] | None,
                       overrides: Iterable[tuple[str, float]] = (), *, device: dict[str, float] | None = None
                       ) -> Tolerances:
    """The model's own tolerances, then a device profile's [tolerances], then `tolerances` (a Tolerances replaces
    everything under it; a dict {precision: rel L2} replaces those precisions), then `overrides` ((precision, rel
    L2) pairs: --tolerance on top of a recipe's). Every value obeys parity.check_rel_l2, as on the CLI."""
    if tolerances is not None and not isinstance(tolerances, (Tolerances, dict)):
        raise InputError(f"tolerances must be a Tolerances or a dict {{precision: rel L2}}, not "
                         f"{type(tolerances).__name__}")
    explicit = isinstance(tolerances, Tolerances)
    out = tolerances if explicit else spec.tolerances
    pairs = [] if explicit else [*(device or {}).items(), *(tolerances or {}).items()]
    for name, rel_l2 in [*pairs, *overrides]:
        precision = Precision.parse(name).value
        out = out.with_rel_l2(precision, check_rel_l2(rel_l2, f"the {precision} tolerance"))
    return out


def check(
    artifact,
    model=None,
    *,
    weights: str | Path | None = None,
    precision: str | Precision | None = None,
    times: Iterable[int] | None = None,
    batches: Iterable[int] | None = None,
    sources: Iterable[str] | None = None,
    tolerances: Tolerances | dict[str, float] | None = None,
    device: "str | DeviceProfile | None" = None,
    threads: int | None = None,
    reference: Runner | None = None,
    artifact_label: str | None = None,
    on_case: Callable[[ParityCase], None] | None = None,
) -> ParityResult:
    """Parity of an artifact (path, Artifact or Runner) against the PyTorch original over a T x batch sweep.
    tolerances: a Tolerances, or {precision: rel L2} replacing those precisions' tolerances in the model's own."""
    from .formats.torch import reference as torch_reference

    weights = _weights(weights)
    runner, owned, profile = _runner_for(artifact, device, threads, "check")
    try:
        runner.load()
        spec = _model_of(runner, model)
        meta = meta_of(runner)
        precision = Precision.parse(precision or meta.get("edgeseq.precision", "fp32"))
        if profile is not None:
            profile.check_precision(runner.format, precision)
        tolerances = resolve_tolerances(spec, tolerances, device=profile.tolerances if profile else None)
        feeds = list(parity_feeds(spec, times, batches, sources, **_limits(runner)))
        runner.prefetch([feed for *_, feed in feeds])  # a remote runner: the whole sweep in one round trip
        ref = reference or torch_reference(spec, weights)
        notes = []
        expected_sha = meta.get("edgeseq.weights_sha256")
        if expected_sha:
            from .models.weights import state_dict_sha256

            ref.load()
            if state_dict_sha256(ref.module) != expected_sha:
                notes.append("the artifact was exported from other weights than the reference (weights sha256 differs)")
        cpu = runner.cpu()
        if precision in (Precision.INT8_DYNAMIC, Precision.INT8_STATIC) and runner.device == "cpu":
            notes += [n for n in (int8_cpu_note(meta, cpu),) if n]
        label = artifact_label or str(getattr(runner, "path", ""))
        return sweep(ref, runner, ((b, t, s, f) for b, t, s, f in feeds), tolerances, precision,
                     model=spec.name, artifact=label, notes=tuple(notes), on_case=on_case, cpu=cpu)
    finally:
        if owned:
            runner.close()


def profile(
    artifact,
    *,
    model=None,
    feed: dict[str, np.ndarray] | None = None,
    shapes: dict[str, tuple[int, ...]] | None = None,
    batch: int = 1,
    time: int | None = None,
    warmup: int = 5,
    iterations: int = 50,
    budget_s: float | None = None,
    device: "str | DeviceProfile | None" = None,
    threads: int | None = None,
    artifact_label: str | None = None,
) -> LatencyResult:
    """Latency of any artifact; inputs come from the feed, the model's real-speech examples or --shape sizes."""
    from .inputs import feed_from_shapes

    batch, time = integer(batch, "batch"), integer(time, "time", optional=True)
    shapes = _shapes(shapes)
    runner, owned, profile = _runner_for(artifact, device, threads, "profile", timing_only=True)
    try:
        runner.load()
        meta = meta_of(runner)
        if profile is not None and meta.get("edgeseq.precision"):
            profile.check_precision(runner.format, Precision.parse(meta["edgeseq.precision"]))
        if feed is None and shapes:
            feed = feed_from_shapes(runner.inputs, shapes)
        if feed is None and (model is not None or meta.get("edgeseq.model")):
            spec = _model_of(runner, model)
            if not spec.has_dynamic_time and time not in (None, spec.default_time):
                raise InputError(f"{spec.name} has a fixed time axis of {spec.default_time}; it cannot run at T={time}")
            feed = spec.example_inputs(batch=batch, time=time if spec.has_dynamic_time else None)
        if feed is None:
            feed = feed_from_shapes(runner.inputs, {})
        label = artifact_label if artifact_label is not None else str(getattr(runner, "path", ""))
        return measure(runner, feed, warmup=warmup, iterations=iterations, budget_s=budget_s, artifact=label,
                       precision=meta.get("edgeseq.precision", "fp32"),
                       frames_per_second=_frame_rate(runner, model))
    finally:
        if owned:
            runner.close()


def _shapes(shapes) -> dict[str, tuple[int, ...]]:
    """profile's shapes=: {name: dims}, or NAME=DxDxD strings (one string is one shape) as --shape takes them."""
    from .inputs import parse_shapes

    if shapes is None or isinstance(shapes, dict):
        out = dict(shapes or {})
        for name, given in out.items():
            dims = tuple(given) if isinstance(given, Iterable) and not isinstance(given, (str, bytes)) else None
            if not isinstance(name, str) or dims is None or not all(is_integer(d) and d >= 1 for d in dims):
                raise InputError(f"shapes maps input names to dimensions >= 1, e.g. {{'features': (1, 200, 128)}}; "
                                 f"got {name!r}: {given!r}")
            out[name] = tuple(int(d) for d in dims)
        return out
    return parse_shapes(list(texts(shapes, "shapes")))


@dataclass(frozen=True)
class DeviceLatency:
    """One device's answer in profile_many: a LatencyResult, or the one-line error that device gave."""

    device: str
    result: LatencyResult | None
    error: str = ""
    exit_code: int = 0

    def to_dict(self) -> dict:
        return {"device": self.device, "result": self.result.to_dict() if self.result else None,
                "error": self.error, "exit_code": self.exit_code}


def profile_many(artifact, devices: "str | DeviceProfile | Sequence[str | DeviceProfile]",
                 **options) -> list[DeviceLatency]:
    """profile() on several devices at once: remote devices run concurrently; devices of this machine take turns
    (so they do not time each other's load). One device failing does not stop the others. `devices`: one device
    (a name, a .toml path or a DeviceProfile: one device, not the characters of its name) or a list of them."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from .devices import DeviceProfile
    from .errors import EdgeseqError

    if isinstance(devices, (str, os.PathLike, DeviceProfile)):
        devices = [devices]
    if not isinstance(devices, Iterable):
        raise InputError(f"devices must be a device or a list of devices, got {devices!r}")
    devices = list(devices)
    if not devices:
        raise InputError("profile_many needs at least one device")
    resolved = [_device_profile(d) for d in devices]  # a bad name or type fails here, before anything runs
    devices = [d.name if isinstance(d, DeviceProfile) else str(d) for d in devices]
    local_turn = threading.Lock()

    def one(name: str, profile) -> DeviceLatency:
        is_local = profile is None or profile.local
        try:
            if is_local:
                with local_turn:
                    result = profile_fn(artifact, device=profile or name, **options)
            else:
                result = profile_fn(artifact, device=profile, **options)
        except EdgeseqError as exc:
            return DeviceLatency(name, None, str(exc), exc.exit_code)
        except Exception as exc:  # noqa: BLE001 - still one line per device; the others go on
            return DeviceLatency(name, None, f"internal error: {type(exc).__name__}: {exc}", 3)
        return DeviceLatency(name, result)

    profile_fn = profile
    with ThreadPoolExecutor(max_workers=len(devices)) as pool:
        return list(pool.map(one, devices, resolved))
