"""What the public functions share: turning the API's flexible arguments (names, paths, Artifacts, Runners,
device profiles, dicts of tolerances) into typed values and open runners, each checked with a one-line error."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from . import formats
from ._checks import integer, integers, is_integer, texts
from .artifact import Artifact
from .enums import Precision
from .errors import EdgeseqError, InputError, UnknownNameError
from .models import ModelSpec, get_model
from .parity import Tolerances, validate_rel_l2
from .runner import Runner

if TYPE_CHECKING:  # pragma: no cover
    from .devices import DeviceProfile


def path_arg(value, what: str) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise InputError(f"{what} must be a path (str or os.PathLike), got {value!r}")
    return Path(value)


def weights_arg(value) -> Path | None:
    """weights=: None (the model's seeded weights) or a checkpoint path; anything else is refused before the work."""
    return None if value is None else path_arg(value, "weights")


def out_dir_arg(value, what: str = "out_dir") -> Path:
    """The export folder: a path that is a folder or can become one (checked before any export work); `what` is
    what an error calls it ("--out" from the CLI)."""
    from .artifact import validate_output_dir

    path = path_arg(value, what)
    validate_output_dir(path, what)
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


def refuse_overwriting_another_model(path: Path, spec: ModelSpec) -> None:
    """Two user models that share a class name (and so an artifact name) must not overwrite each other's files: an
    artifact already there from another model (name or factory) is an InputError before any work."""
    if not path.exists():  # a file, or a folder artifact (.mlpackage)
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


def device_profile(device) -> "DeviceProfile | None":
    """device= as a DeviceProfile (a profile name, a .toml path or a DeviceProfile), or None for a plain runner
    device (cpu, cuda, tensorrt)."""
    from .devices import DeviceProfile, resolve_device

    if device is None or isinstance(device, DeviceProfile):
        return device
    if not isinstance(device, (str, os.PathLike)):
        raise InputError(f"device must be cpu, cuda, tensorrt, a device profile name or .toml path, or a "
                         f"DeviceProfile; got {device!r}")
    return resolve_device(str(device))


def runner_for_call(artifact, device, threads, what: str, timing_only: bool = False
                ) -> "tuple[Runner, bool, DeviceProfile | None]":
    """(runner, owned, device profile) for check / profile: an open Runner as given (owned False: the caller keeps
    it, and device= / threads= cannot apply), else the artifact opened here on `device`."""
    if isinstance(artifact, Runner):
        if device is not None or threads is not None:
            raise InputError(f"device= and threads= apply when {what} opens the artifact; this Runner is already "
                             "open")
        return artifact, False, None
    profile = device_profile(device)
    return open_runner(artifact, device=profile or device, threads=threads, timing_only=timing_only), True, profile


def open_runner(path, *, device=None, threads: int | None = None, timing_only: bool = False) -> Runner:
    if isinstance(path, Artifact):
        path = path.path
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise InputError(f"the artifact must be a path, an Artifact or a Runner, got {path!r}")
    threads = integer(threads, "threads", optional=True)
    profile = device_profile(device)
    if profile is None:
        return formats.runner_for(path, device=device and str(device), threads=threads)
    if profile.local:
        profile.validate_local(formats.detect_format(path), takes=formats.file_suffix(profile.format))
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
    return runner.metadata


def model_of(runner: Runner, model) -> ModelSpec:
    """The artifact's model: `model` where given (needed for files without edgeseq metadata), else the artifact's
    own; a `model` that contradicts the artifact's metadata is refused (its outputs could never match)."""
    if runner.spec is not None and model is None:
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


def frame_rate(runner: Runner, model) -> float | None:
    """The model's frame rate for the real-time factor; None (no RTF) where the model declares none or is unknown."""
    try:
        return model_of(runner, model).frames_per_second
    except EdgeseqError:
        return None


def serve_limits(runner: Runner) -> dict[str, int | None]:
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
    L2) pairs: --tolerance on top of a recipe's). Every value obeys parity.validate_rel_l2, as on the CLI."""
    if tolerances is not None and not isinstance(tolerances, (Tolerances, dict)):
        raise InputError(f"tolerances must be a Tolerances or a dict {{precision: rel L2}}, not "
                         f"{type(tolerances).__name__}")
    explicit = isinstance(tolerances, Tolerances)
    out = tolerances if explicit else spec.tolerances
    pairs = [] if explicit else [*(device or {}).items(), *(tolerances or {}).items()]
    for name, rel_l2 in [*pairs, *overrides]:
        precision = Precision.parse(name).value
        out = out.with_rel_l2(precision, validate_rel_l2(rel_l2, f"the {precision} tolerance"))
    return out


def shapes_arg(shapes) -> dict[str, tuple[int, ...]]:
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

