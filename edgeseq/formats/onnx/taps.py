"""Layer taps for bisection: the ONNX tensor holding each PyTorch module's output, and their values."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..._lazy import require
from .options import EXTRA
from .session import new_session

# ---- layer bisection ------------------------------------------------------------------------------------------------


def module_tensors(path: str | Path, module_names: list[str]) -> dict[str, str]:
    """Map PyTorch module paths to the ONNX tensor holding each module's output.

    The TorchScript exporter names nodes after module scopes ("/highway/highway.3/h/MatMul" is module
    "highway.3.h"); a module's output is the first output of the last node (in graph order) inside its scope.
    Modules with no node of their own (folded batch norms, identities) are left out.
    """
    onnx = require("onnx", EXTRA)
    model = onnx.load(str(path), load_external_data=False)
    wanted = set(module_names)
    last: dict[str, str] = {}
    for node in model.graph.node:
        if not node.output or not node.name.startswith("/"):
            continue
        path_ = _scope_to_module(node.name.split("/")[1:-1])
        while path_:
            if path_ in wanted:
                last[path_] = node.output[0]
            path_ = path_.rpartition(".")[0]
    return last


def _scope_to_module(components: list[str]) -> str:
    """['highway', 'highway.3', 'h'] -> 'highway.3.h'; ['bank', 'convs.0', 'conv'] -> 'bank.convs.0.conv'."""
    parts: list[str] = []
    for comp in components:
        if parts and comp.startswith(parts[-1].rpartition(".")[2] + "."):
            comp = comp[len(parts[-1].rpartition(".")[2]) + 1:]
        parts.append(comp)
    return ".".join(parts)


def intermediate_outputs(path: str | Path, feed: dict[str, np.ndarray], tensors: dict[str, str]) -> dict[str, np.ndarray]:
    """Run the model with the given internal tensors exposed as extra outputs (on a copy; the artifact is untouched)."""
    onnx = require("onnx", EXTRA)
    ort = require("onnxruntime", EXTRA)
    model = onnx.load(str(path))
    existing = {o.name for o in model.graph.output}
    for tensor in dict.fromkeys(tensors.values()):
        if tensor not in existing:
            model.graph.output.append(onnx.ValueInfoProto(name=tensor))
    options = ort.SessionOptions()
    options.log_severity_level = 4
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every named tensor
    session = new_session(ort, model.SerializeToString(), options, ["CPUExecutionProvider"])
    names = list(dict.fromkeys(tensors.values()))
    values = dict(zip(names, session.run(names, feed)))
    return {module: values[tensor] for module, tensor in tensors.items()}
