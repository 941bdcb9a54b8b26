"""The build job a TensorRT device (Jetson) gets: which ONNX, which trtexec build flags, which inputs and outputs.

Engines are tied to the GPU and TensorRT version that build them, so a TensorRT device builds its own from the
TensorRT-ready ONNX that `edgeseq export --format tensorrt` writes. The flags come from the export's build plan
(`X.trt-build.json` beside `X.trt.onnx`) when there is one, else from a plan made here for the ONNX's own precision
and the model's default optimization profile. The device agent drives trtexec with it (agent.TrtexecModel).
"""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

from ..errors import ArtifactError, InputError

_DROP = ("--onnx=", "--saveEngine=", "--timingCacheFile=")  # set per device by the device agent, or not needed
_ONNX_TYPES = {1: "float32", 10: "float16", 6: "int32", 7: "int64", 3: "int8", 9: "bool"}


def plan_path(onnx_path: Path) -> Path | None:
    from ..formats.tensorrt import ONNX_SUFFIX, PLAN_SUFFIX

    name = onnx_path.name
    if not name.endswith(ONNX_SUFFIX):
        return None
    return onnx_path.with_name(name[: -len(ONNX_SUFFIX)] + PLAN_SUFFIX)


def _plan(onnx_path: Path, metadata: dict[str, str]) -> dict:
    from ..enums import Precision
    from ..formats import tensorrt
    from ..models import get_model

    path = plan_path(onnx_path)
    if path is not None and path.is_file():
        try:
            plan = json.loads(path.read_text())
            plan["trtexec"], plan["profile"]  # noqa: B018 (the keys the job needs)
            return plan
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"cannot read the build plan {str(path)!r}: {exc}") from None
    model = metadata.get("edgeseq.model")
    if not model:
        raise InputError(f"{onnx_path.name} has no edgeseq metadata and no build plan beside it; export it with "
                         "`edgeseq export MODEL --format tensorrt` for a TensorRT device")
    spec = get_model(model)
    precision = Precision.parse(metadata.get("edgeseq.precision", "fp32"))
    plan = tensorrt.make_plan(spec.name, precision, onnx_path.name, "model.engine",
                              tensorrt.default_shape_profile(spec), fp16_onnx=tensorrt.is_fp16_onnx(onnx_path))
    return plan.to_dict()


def build_job(onnx_path: str | Path, artifact_name: str, trtexec: str) -> bytes:
    """The job JSON (bytes, deterministic: its sha names it in the device cache)."""
    from .._lazy import require

    onnx = require("onnx", "onnx")
    onnx_path = Path(onnx_path)
    model = onnx.load(str(onnx_path), load_external_data=False)
    metadata = {p.key: p.value for p in model.metadata_props}
    plan = _plan(onnx_path, metadata)
    build_args = [a for a in shlex.split(plan["trtexec"])[1:] if not a.startswith(_DROP)]
    initializers = {i.name for i in model.graph.initializer}
    inputs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        rng = plan["profile"].get(value.name)
        opt = rng["opt"] if rng else [d or 1 for d in shape]
        inputs.append({"name": value.name, "shape": shape, "dtype": _ONNX_TYPES.get(tensor.elem_type, "float32"),
                       "opt": opt})
    flags = hashlib.sha256(" ".join(build_args).encode()).hexdigest()[:8]
    job = {
        "onnx": artifact_name,
        "engine": f"{artifact_name}.{flags}.engine",
        "build_args": build_args,
        "precision": plan.get("precision", "fp32"),
        "trtexec": trtexec or "trtexec",
        "inputs": inputs,
        "outputs": [{"name": o.name} for o in model.graph.output],
        # what runs is the engine: its precision (fp16 from an fp32 ONNX + --fp16) sets the tolerance
        "metadata": {**metadata, "edgeseq.precision": plan.get("precision", metadata.get("edgeseq.precision", "fp32"))},
    }
    return json.dumps(job, sort_keys=True, indent=1).encode()
