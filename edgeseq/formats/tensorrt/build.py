"""Building an engine: the build plan (flags, profile, the exact trtexec command), the builder itself where
TensorRT and a GPU are present, and the sidecar that pins an engine to its GPU and TensorRT version."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from ..._lazy import available, require
from ...artifact import atomic_path
from ...enums import Precision
from ...errors import ArtifactError, ExportError, UnsupportedError
from .options import EXTRA, PLAN_SCHEMA, SIDECAR_SCHEMA, TIMING_CACHE_NAME, ShapeRange, companion_paths
from .shape_profiles import _shape_profile_text

# ---- the build plan: what is built and how (also the trtexec command for targets that build their own) ------------


@dataclass(frozen=True)
class BuildPlan:
    model: str
    precision: str
    onnx: str  # file names, relative to the folder that holds the plan
    engine: str
    timing_cache: str
    profile: dict[str, ShapeRange]
    strongly_typed: bool
    set_flags: tuple[str, ...]  # BuilderFlag names switched on
    cleared_flags: tuple[str, ...]  # BuilderFlag names switched off
    workspace_mib: int | None = None
    notes: tuple[str, ...] = ()

    def trtexec_argv(self) -> list[str]:
        def spec(which: str) -> str:
            return ",".join(f"{_trtexec_name(n)}:{'x'.join(map(str, getattr(r, which)))}"
                            for n, r in self.profile.items())

        argv = ["trtexec", f"--onnx={self.onnx}", f"--saveEngine={self.engine}"]
        if any(r.min != r.max for r in self.profile.values()):
            argv += [f"--minShapes={spec('min')}", f"--optShapes={spec('opt')}", f"--maxShapes={spec('max')}"]
        argv.append(f"--timingCacheFile={self.timing_cache}")
        if self.strongly_typed:
            argv.append("--stronglyTyped")
        argv += [f"--{_TRTEXEC_FLAGS[f]}" for f in self.set_flags]
        if "TF32" in self.cleared_flags:
            argv.append("--noTF32")
        if self.workspace_mib:
            argv.append(f"--memPoolSize=workspace:{self.workspace_mib}")
        return argv

    def trtexec_command(self) -> str:
        return " ".join(shlex.quote(a) for a in self.trtexec_argv())

    def to_dict(self) -> dict:
        return {
            "schema": PLAN_SCHEMA,
            "model": self.model,
            "precision": self.precision,
            "onnx": self.onnx,
            "engine": self.engine,
            "timing_cache": self.timing_cache,
            "profile": {n: r.to_dict() for n, r in self.profile.items()},
            "network": {"strongly_typed": self.strongly_typed},
            "builder_flags": {"set": list(self.set_flags), "cleared": list(self.cleared_flags)},
            "workspace_mib": self.workspace_mib,
            "trtexec": self.trtexec_command(),
            "notes": list(self.notes),
        }


_TRTEXEC_FLAGS = {"FP16": "fp16", "INT8": "int8"}


def _trtexec_name(name: str) -> str:
    # trtexec splits shape specs on ':' and ','; names holding them are wrapped in single quotes, as its help says
    return f"'{name}'" if any(c in name for c in ":,") else name


def make_plan(spec_name: str, precision: Precision, onnx_name: str, engine_name: str, profile: dict[str, ShapeRange],
              *, fp16_onnx: bool = False, timing_cache: str = TIMING_CACHE_NAME,
              workspace_mib: int | None = None) -> BuildPlan:
    """The build for one precision (TensorRT 10 flags; the notes say what changes on 11)."""
    notes = []
    if precision is Precision.FP32:
        strongly, set_flags, cleared = False, (), ("TF32",)
        notes.append("fp32: TF32 is switched off (--noTF32) so results match the PyTorch fp32 original")
    elif precision is Precision.FP16 and not fp16_onnx:
        strongly, set_flags, cleared = False, ("FP16",), ()
        notes.append("fp16 from the fp32 ONNX with the FP16 builder flag (--fp16): TensorRT 10.x. TensorRT 11 "
                     "removed the flag; there, build from an fp16 ONNX (e.g. ModelOpt AutoCast) without --fp16")
    elif precision is Precision.FP16:
        strongly, set_flags, cleared = True, (), ()
        notes.append("fp16 from an ONNX typed in fp16: a strongly typed build (TensorRT 10 and 11)")
    elif precision is Precision.INT8_STATIC:
        strongly, set_flags, cleared = True, (), ("TF32",)
        notes.append("int8 from the ONNX's explicit QuantizeLinear/DequantizeLinear nodes, built strongly typed "
                     "(--stronglyTyped; the layers outside Q/DQ pairs stay fp32). On TensorRT 10 the weakly typed "
                     "equivalent is --int8; TensorRT 11 removed --int8")
    else:
        raise UnsupportedError(f"TensorRT has no {precision.value} build")
    notes.append("run the trtexec command from the folder that holds these files; engines are tied to the GPU "
                 "and TensorRT version that build them")
    return BuildPlan(model=spec_name, precision=precision.value, onnx=onnx_name, engine=engine_name,
                     timing_cache=timing_cache, profile=profile, strongly_typed=strongly, set_flags=set_flags,
                     cleared_flags=cleared, workspace_mib=workspace_mib, notes=tuple(notes))


def can_build() -> tuple[bool, str]:
    """Whether an engine can be built here, and if not, why (one phrase)."""
    if not available("tensorrt"):
        return False, "the tensorrt package is not installed"
    import torch

    if not torch.cuda.is_available():
        return False, "torch sees no CUDA GPU"
    return True, ""


# ---- building (needs TensorRT and a CUDA GPU) ------------------------------------------------------------------------


def this_machine(device: str | None = None) -> dict[str, str]:
    """TensorRT version, GPU name and compute capability here (of `device`, default the current one): what an
    engine is tied to."""
    trt = require("tensorrt", EXTRA)
    import torch

    if not torch.cuda.is_available():
        raise UnsupportedError("TensorRT engines run on a CUDA GPU, and torch sees none here")
    index = torch.device(device).index if device and ":" in device else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    return {"tensorrt_version": str(trt.__version__), "gpu_name": str(props.name),
            "compute_capability": f"{props.major}.{props.minor}"}


def _logger(trt):
    """A TensorRT logger that keeps errors, so a failed parse or build can say why in one line."""

    class Keep(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(str(msg).strip())

    return Keep()


def build_engine(onnx_path: Path, engine_path: Path, plan: BuildPlan, *, timing_cache: Path | None = None) -> dict:
    """OnnxParser -> network -> BuilderConfig (profile, precision flags, timing cache) -> serialized engine.

    Writes the engine atomically and the updated timing cache; returns what the sidecar records about the build.
    """
    trt = require("tensorrt", EXTRA)
    machine = this_machine()
    logger = _logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    if plan.strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = []
        for i in range(parser.num_errors):
            err = parser.get_error(i)
            where = " ".join(x for x in (_call(err, "node_name"), _call(err, "node_operator")) if x)
            errors.append(f"{where}: {err.desc()}" if where else str(err.desc()))
        raise ExportError(f"TensorRT's ONNX parser rejected {onnx_path.name}: " + "; ".join(errors[:3]))

    config = builder.create_builder_config()
    for name in plan.set_flags:
        flag = getattr(trt.BuilderFlag, name, None)
        if flag is None:
            raise UnsupportedError(
                f"TensorRT {trt.__version__} has no {name} builder flag (TensorRT 11 builds strongly typed networks "
                f"only): build {plan.precision} from an ONNX typed in {plan.precision} "
                "(TensorRTOptions(onnx_path=...))"
            )
        config.set_flag(flag)
    for name in plan.cleared_flags:
        config.clear_flag(getattr(trt.BuilderFlag, name))
    if plan.workspace_mib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_mib << 20)

    profile = builder.create_optimization_profile()
    for name, rng in plan.profile.items():
        profile.set_shape(name, rng.min, rng.opt, rng.max)
    if config.add_optimization_profile(profile) < 0:
        raise ExportError(f"TensorRT rejected the optimization profile {_shape_profile_text(plan.profile)}")

    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        why = "; ".join(logger.errors[-3:]) or "no error message"
        raise ExportError(f"TensorRT could not build an engine from {onnx_path.name}: {why}")
    with atomic_path(engine_path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(serialized)  # IHostMemory exposes the buffer protocol
    if timing_cache is not None:
        with atomic_path(timing_cache) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(config.get_timing_cache().serialize())
    return {**machine, "network": {"strongly_typed": plan.strongly_typed},
            "builder_flags": {"set": list(plan.set_flags), "cleared": list(plan.cleared_flags)}}


def _call(obj, method: str) -> str:
    fn = getattr(obj, method, None)
    try:
        return str(fn()) if fn else ""
    except Exception:  # older bindings: the method exists on some error kinds only
        return ""


# ---- the sidecar: engines are not portable --------------------------------------------------------------------------


def read_sidecar(engine_path: str | Path) -> dict | None:
    """The JSON written beside an engine at build time, or None when there is none (e.g. an engine from trtexec)."""
    path = companion_paths(engine_path)["sidecar"]
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"cannot read the engine sidecar {path.name}: {exc}") from None
    keys = ("tensorrt_version", "gpu_name", "compute_capability")
    if not isinstance(data, dict) or data.get("schema") != SIDECAR_SCHEMA or any(k not in data for k in keys):
        raise ArtifactError(f"{path.name} is not an edgeseq engine sidecar ({SIDECAR_SCHEMA!r} with "
                            "tensorrt_version, gpu_name and compute_capability expected)")
    return data


def sidecar_metadata(sidecar: dict | None) -> dict[str, str]:
    """An engine's edgeseq metadata, from its sidecar (an engine from trtexec has none: {})."""
    side = sidecar or {}
    keys = (("model", "edgeseq.model"), ("precision", "edgeseq.precision"),
            ("weights_sha256", "edgeseq.weights_sha256"))
    return {meta: str(side[k]) for k, meta in keys if side.get(k)}


def validate_sidecar(sidecar: dict, here: dict, engine_name: str) -> None:
    """Refuse, in one line, an engine built on another GPU model or compute capability or another TensorRT."""
    fields = (("tensorrt_version", "TensorRT {}"), ("compute_capability", "compute capability {}"),
              ("gpu_name", "{}"))
    diffs = [(fmt.format(sidecar[k]), fmt.format(here[k])) for k, fmt in fields if str(sidecar[k]) != str(here[k])]
    if diffs:
        built = ", ".join(b for b, _ in diffs)
        now = ", ".join(h for _, h in diffs)
        model = sidecar.get("model", "MODEL")
        raise ArtifactError(
            f"{engine_name} was built for {built} but this machine has {now}; TensorRT engines are not portable: "
            f"rebuild it here (edgeseq export {model} --format tensorrt -p {sidecar.get('precision', 'fp32')})"
        )
