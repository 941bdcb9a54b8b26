"""The Python API for app pipelines; the CLI calls exactly these functions (what they share is in resolve.py)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np

from . import formats
from ._checks import integer, integers
from .artifact import Artifact
from .enums import Format, Precision
from .errors import EdgeseqError, InputError
from .formats.contract import ExportSettings
from .latency import LatencyResult, measure
from .parity import ParityCase, ParityResult, Tolerances, sweep
from .quantize import int8_cpu_note
from .resolve import (device_profile, frame_rate, meta_of, model_of, open_runner, out_dir_arg, parity_feeds, path_arg,
                      refuse_overwriting_another_model, resolve_spec, resolve_tolerances, runner_for_call, serve_limits,
                      shapes_arg, weights_arg)
from .runner import Runner

if TYPE_CHECKING:  # pragma: no cover
    from .devices import DeviceProfile
    from .padding import PaddingResult
    from .streaming import StreamResult


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

    `max_time` (TFLite, Core ML): the longest sequence the artifact serves; longer inputs are refused, never cropped.
    `shapes` (TensorRT only) overrides the optimization profile taken from the model: NAME=MIN:OPT:MAX strings
    (e.g. "features=1x1x128:1x200x128:16x1000x128") or {name: (min, opt, max)}. Without TensorRT on this machine a
    TensorRT export writes the ONNX and the build plan (trtexec command) and says so in the Artifact's notes.
    ONNX fp16 / int8 artifacts are derived from an fp32 export (`parent`, or a fresh one): `quant` adjusts the
    default QuantConfig (a QuantConfig, a dict or KEY=VALUE strings, see edgeseq.quantize); int8-static calibrates
    on `calibration_data` (an iterable of input dicts), a directory of .npy files (`calibration`) or, by default,
    the model's own real-speech calibration inputs.
    """
    fmt, precision = formats.get(format), Precision.parse(precision)
    fmt.validate_precision(precision)
    if isinstance(parent, Artifact):
        parent = parent.path
    settings = ExportSettings(opset=opset, exporter=exporter, shapes=shapes, max_time=max_time, quant=quant,
                              calibration=None if calibration is None else str(calibration),
                              calibration_data=calibration_data,
                              parent=None if parent is None else str(path_arg(parent, "parent")))
    options = fmt.options(precision, settings)  # settings this format does not take fail before any work
    out_dir = out_dir_arg(out_dir)
    weights = weights_arg(weights)
    spec = resolve_spec(model, example_inputs, input_names, output_names, dynamic_axes)
    out = out_dir / fmt.artifact_name(spec.name, precision)
    refuse_overwriting_another_model(out, spec)
    return fmt.export(spec, out, precision=precision, options=options, weights=weights)


def load(path: str | Path | Artifact, *, device=None, threads: int | None = None) -> Runner:
    """A runner for any artifact file, picked from the file itself (works on any ONNX model, not only ours).

    device: a plain runner device (cpu, cuda, tensorrt), a device profile name or .toml path, or a DeviceProfile;
    a profile reached over ssh / adb gives a runner that runs on that device (parity is still computed here)."""
    return open_runner(path, device=device, threads=threads)


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

    weights = weights_arg(weights)
    runner, owned, profile = runner_for_call(artifact, device, threads, "check")
    try:
        runner.load()
        spec = model_of(runner, model)
        meta = meta_of(runner)
        precision = Precision.parse(precision or meta.get("edgeseq.precision", "fp32"))
        if profile is not None:
            profile.validate_precision(runner.format, precision)
        tolerances = resolve_tolerances(spec, tolerances, device=profile.tolerances if profile else None)
        feeds = list(parity_feeds(spec, times, batches, sources, **serve_limits(runner)))
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
                     model=spec.name, artifact=label, notes=tuple(notes), on_case=on_case, cpu=cpu,
                     time_axes=spec.time_axes())
    finally:
        if owned:
            runner.close()


def check_stream(
    artifact,
    model=None,
    *,
    chunks: Sequence[int] = (1, 8, 32),
    time: int | None = None,
    batch: int = 1,
    source: str = "speech",
    weights: str | Path | None = None,
    precision: str | Precision | None = None,
    tolerances: Tolerances | dict[str, float] | None = None,
    device: "str | DeviceProfile | None" = None,
    threads: int | None = None,
) -> "StreamResult":
    """The chunked-vs-full gate of a streaming artifact (a model with state inputs / outputs, e.g. cbhg-lite-stream):
    fed `chunk` frames per call with its state carried, its concatenated outputs and final state must equal the
    PyTorch original's single full-sequence call within the precision's tolerance; with the cost of each chunk."""
    from .formats.torch import reference as torch_reference
    from .streaming import DEFAULT_TIME, check_stream as gate

    weights = weights_arg(weights)
    time = integer(DEFAULT_TIME if time is None else time, "time")
    batch = integer(batch, "batch")
    chunks = integers(chunks, "chunks") or (1, 8, 32)
    with _judged(artifact, model, precision, tolerances, device, threads) as (runner, spec, precision, tolerances):
        ref = torch_reference(spec, weights)
        ref.load()
        return gate(runner, ref, spec, precision=precision.value, tolerances=tolerances, chunks=chunks, time=time,
                    batch=batch, source=source, artifact=str(getattr(runner, "path", "")))


@contextmanager
def _judged(artifact, model, precision, tolerances, device, threads):
    """(runner, spec, precision, tolerances) of an artifact under test, as check resolves them; closed after."""
    runner, owned, profile = runner_for_call(artifact, device, threads, "check")
    try:
        runner.load()
        spec = model_of(runner, model)
        precision = Precision.parse(precision or meta_of(runner).get("edgeseq.precision", "fp32"))
        yield runner, spec, precision, resolve_tolerances(spec, tolerances,
                                                          device=profile.tolerances if profile else None)
    finally:
        if owned:
            runner.close()


def check_padding(
    artifact,
    model=None,
    *,
    batches: Sequence[int] = (3, 8),
    time: int | None = None,
    precision: str | Precision | None = None,
    tolerances: Tolerances | dict[str, float] | None = None,
    device: "str | DeviceProfile | None" = None,
    threads: int | None = None,
) -> "PaddingResult":
    """Padding safety of an artifact: each row of zero-padded ragged batches (lengths 1 .. `time`, the model's
    lengths input set where it declares one) against the same row run alone at its own length, at the precision's
    tolerance. Not a gate: a model that lets padding reach valid frames is reported so, with the error."""
    from .padding import DEFAULT_TIME, check_padding as measure

    time = integer(DEFAULT_TIME if time is None else time, "time")
    batches = integers(batches, "batches") or (3, 8)
    with _judged(artifact, model, precision, tolerances, device, threads) as (runner, spec, precision, tolerances):
        return measure(runner, spec, precision=precision.value, tolerances=tolerances, batches=batches, time=time,
                       artifact=str(getattr(runner, "path", "")))


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
    shapes = shapes_arg(shapes)
    runner, owned, profile = runner_for_call(artifact, device, threads, "profile", timing_only=True)
    try:
        runner.load()
        meta = meta_of(runner)
        if profile is not None and meta.get("edgeseq.precision"):
            profile.validate_precision(runner.format, Precision.parse(meta["edgeseq.precision"]))
        if feed is None and shapes:
            feed = feed_from_shapes(runner.inputs, shapes)
        if feed is None and (model is not None or meta.get("edgeseq.model")):
            spec = model_of(runner, model)
            if not spec.has_dynamic_time and time not in (None, spec.default_time):
                raise InputError(f"{spec.name} has a fixed time axis of {spec.default_time}; it cannot run at T={time}")
            feed = spec.example_inputs(batch=batch, time=time if spec.has_dynamic_time else None)
        if feed is None:
            feed = feed_from_shapes(runner.inputs, {})
        label = artifact_label if artifact_label is not None else str(getattr(runner, "path", ""))
        return measure(runner, feed, warmup=warmup, iterations=iterations, budget_s=budget_s, artifact=label,
                       precision=meta.get("edgeseq.precision", "fp32"),
                       frames_per_second=frame_rate(runner, model))
    finally:
        if owned:
            runner.close()


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

    if isinstance(devices, (str, os.PathLike, DeviceProfile)):
        devices = [devices]
    if not isinstance(devices, Iterable):
        raise InputError(f"devices must be a device or a list of devices, got {devices!r}")
    devices = list(devices)
    if not devices:
        raise InputError("profile_many needs at least one device")
    resolved = [device_profile(d) for d in devices]  # a bad name or type fails here, before anything runs
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
