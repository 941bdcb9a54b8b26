"""Layer bisection: when parity fails, name the first PyTorch module whose output leaves tolerance.

The PyTorch side records every module's output with forward hooks; the format side exposes the matching internal
tensors (ONNX: by module scope in node names; TFLite: by the module stack litert-torch writes into tensor names,
read back with every intermediate preserved). Modules are compared in the order PyTorch finished them, so the first
failing one is the earliest layer that diverged; its parents (which contain it) fail after it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .enums import Format, Precision
from .errors import UnsupportedError
from .models import ModelSpec
from .parity import Tolerances, compare


@dataclass(frozen=True)
class LayerError:
    module: str
    kind: str
    tensor: str
    max_abs: float
    rel_l2: float
    passed: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BisectResult:
    model: str
    artifact: str
    precision: str
    layers: tuple[LayerError, ...]
    skipped: tuple[str, ...]  # modules with no matching tensor (folded, fused, or another layout)

    @property
    def first_divergent(self) -> LayerError | None:
        return next((layer for layer in self.layers if not layer.passed), None)

    def to_dict(self) -> dict:
        first = self.first_divergent
        return {
            "model": self.model,
            "artifact": self.artifact,
            "precision": self.precision,
            "first_divergent": first.to_dict() if first else None,
            "layers": [layer.to_dict() for layer in self.layers],
            "skipped": list(self.skipped),
        }


def torch_module_outputs(module, feed: dict[str, np.ndarray], input_names: list[str]):
    """Every named submodule's (first) output, in the order the modules finished."""
    import torch

    outputs: dict[str, np.ndarray] = {}
    kinds: dict[str, str] = {}
    hooks = []
    for name, sub in module.named_modules():
        if not name:
            continue

        def hook(m, inp, out, name=name):
            out = out[0] if isinstance(out, (tuple, list)) else out
            if isinstance(out, torch.Tensor):
                outputs[name] = out.detach().float().cpu().numpy()
                kinds[name] = type(m).__name__

        hooks.append(sub.register_forward_hook(hook))
    try:
        with torch.inference_mode():
            module(*[torch.from_numpy(feed[n]) for n in input_names])
    finally:
        for h in hooks:
            h.remove()
    return outputs, kinds


def bisect(
    artifact: str | Path,
    spec: ModelSpec,
    *,
    weights=None,
    precision: str | Precision = Precision.FP32,
    tolerances: Tolerances | None = None,
    batch: int = 1,
    time: int = 50,
) -> BisectResult:
    from .formats import detect_format

    fmt = detect_format(artifact)
    if fmt not in (Format.ONNX, Format.TFLITE):
        raise UnsupportedError(f"layer bisection is not available for {fmt.value} artifacts (ONNX and TFLite only)")

    precision = Precision.parse(precision)
    tolerances = tolerances or spec.tolerances
    feed = spec.example_inputs(batch=batch, time=time if spec.has_dynamic_time else None, source="speech")
    module = spec.build(weights)
    expected, kinds = torch_module_outputs(module, feed, spec.input_names)
    if fmt is Format.ONNX:
        from .formats import onnx as onnx_format

        tensors, mixed = onnx_format.module_tensors(artifact, list(expected)), set()
        got = onnx_format.intermediate_outputs(artifact, feed, tensors)
    else:
        from .formats import tflite_layers

        tensors, mixed = tflite_layers.module_tensors(artifact, module)
        got = tflite_layers.intermediate_outputs(artifact, feed, spec.input_names, tensors)
        got = {name: _best_layout(expected[name], value) for name, value in got.items() if name in expected}
        got = {name: value for name, value in got.items() if value is not None}
    names = list(expected)
    got_by_tensor = {name: tensors.get(name) for name in names if name in got}
    layers, skipped = [], []
    tol = tolerances.get(precision, spec.output_names[0])
    for i, name in enumerate(names):  # the hooks' firing order: earliest-finished first
        value = got.get(name)
        if value is None or value.shape != expected[name].shape:
            skipped.append(name)
            continue
        err = compare(name, expected[name], value, tol)
        label = name
        if not err.passed:
            # a converter may fuse a module with the next ones that have no node of their own (conv + batch norm):
            # then this tensor is the output of the last of them; take the reading that explains it best
            for later in _absorbed(names, i, got_by_tensor):
                if expected[later].shape == value.shape:
                    other = compare(later, expected[later], value, tol)
                    if other.passed or other.rel_l2 < err.rel_l2 / 2:
                        err, label = other, f"{name} (fused with {later.rpartition('.')[2]})"
                        if other.passed:
                            break
        if not err.passed and name in mixed:
            skipped.append(name)  # fused with code outside the module (a functional ReLU): not its own output
            continue
        layers.append(LayerError(label, kinds[name], str(tensors[name]), err.max_abs, err.rel_l2, err.passed))
    return BisectResult(spec.name, str(artifact), precision.value, tuple(layers), tuple(skipped))


def _best_layout(expected: np.ndarray, value: np.ndarray) -> np.ndarray | None:
    """The candidate layout of a TFLite tensor closest to PyTorch's (NHWC vs NCW, split directions, ...)."""
    from .formats.tflite_layers import align_to

    candidates = align_to(expected, value)
    if not candidates:
        return None
    errors = [float(np.linalg.norm(c - expected)) for c in candidates]
    return candidates[int(np.argmin(errors))]


def _absorbed(names: list[str], i: int, got: dict) -> list[str]:
    """Modules finishing right after names[i] that the converter folded into the same tensor: those with no
    tensor of their own (a batch norm folded into a conv) or mapped to the same tensor (an enclosing container)."""
    tensor = got.get(names[i])
    out = []
    for later in names[i + 1:]:
        mine = got.get(later)
        if mine is not None and mine != tensor:
            break
        out.append(later)
    return out
