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

from .artifact import Artifact
from .enums import Precision
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
    runtime: str = ""  # where the candidate ran (the matrix bisects each failing row)
    batch: int = 1  # the case it was run on
    time: int = 0
    source: str = "speech"

    @property
    def first_divergent(self) -> LayerError | None:
        return next((layer for layer in self.layers if not layer.passed), None)

    @property
    def diverged_for_good(self) -> LayerError | None:
        """The first layer of the run of failures that lasts to the model's end: where the error left tolerance
        and never came back. With int8 the two differ: a quantized conv can leave the output's tolerance and the
        error shrink again downstream, so the first divergent layer may be one the last release had too. Layers that
        finish inside the first divergent layer's top-level stage without enclosing it are left out of the judgement:
        they may be parallel branches that never saw its error (the conv bank's other convs)."""
        first = self.first_divergent
        if first is None:
            return None
        start = self.layers.index(first)
        downstream = [first] + [layer for layer in self.layers[start + 1:] if _sees(layer.module, first.module)]
        if downstream[-1].passed:
            return None
        i = len(downstream) - 1
        while i > 0 and not downstream[i - 1].passed:
            i -= 1
        return downstream[i]

    def to_dict(self) -> dict:
        first, for_good = self.first_divergent, self.diverged_for_good
        return {
            "model": self.model,
            "artifact": self.artifact,
            "precision": self.precision,
            "runtime": self.runtime,
            "batch": self.batch,
            "time": self.time,
            "source": self.source,
            "first_divergent": first.to_dict() if first else None,
            "diverged_for_good": for_good.to_dict() if for_good else None,
            "layers": [layer.to_dict() for layer in self.layers],
            "skipped": list(self.skipped),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "BisectResult":
        return cls(d["model"], d["artifact"], d["precision"], tuple(LayerError(**x) for x in d["layers"]),
                   tuple(d["skipped"]), d.get("runtime", ""), d.get("batch", 1), d.get("time", 0),
                   d.get("source", "speech"))


def _sees(later: str, first: str) -> bool:
    """Whether a module that finished after `first` surely computes on its output: one that encloses it, or one
    outside its top-level stage (the stages run in sequence). Labels may carry a "(fused with ...)" suffix."""
    later, first = later.split(" ")[0], first.split(" ")[0]
    if first.startswith(later + ".") or later == first:
        return True
    return not later.startswith(first.split(".")[0] + ".")


def verdict(result: dict) -> str:
    """One line from a BisectResult's dict: the layer to look at, or that none alone is to blame."""
    first = result.get("first_divergent")
    if not first:
        return (f"no single layer left tolerance ({len(result.get('layers', []))} compared); the error builds up "
                "across layers")
    where = "" if first["tensor"] == first["module"] else f" (tensor {first['tensor']})"
    line = (f"first divergent layer: {first['module']} ({first['kind']}): rel L2 {first['rel_l2']:.3g}, "
            f"max abs {first['max_abs']:.3g}{where}")
    for_good = result.get("diverged_for_good")
    if for_good and for_good["module"] != first["module"]:
        line += (f"; it came back within tolerance, and the error left it for good at {for_good['module']} "
                 f"({for_good['kind']}): rel L2 {for_good['rel_l2']:.3g}")
    return line


def torch_module_outputs(module, feed: dict[str, np.ndarray], input_names: list[str]):
    """Every named submodule's (first) output, in the order the modules finished. Inputs go to the module's own
    device and floating dtype (a CUDA fp16 runner's module); fp32 stays fp32 (no TF32 in convs or matmuls)."""
    import torch

    param = next(module.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32

    outputs: dict[str, np.ndarray] = {}
    kinds: dict[str, str] = {}
    hooks = []
    for name, sub in module.named_modules():
        if not name:
            continue

        def hook(m, inp, out, name=name):
            out = out[0] if isinstance(out, (tuple, list)) else out
            if isinstance(out, torch.Tensor):  # a copy: an in-place op later (x += r, ReLU(inplace)) would change a view
                outputs[name] = out.detach().float().cpu().numpy().copy()
                kinds[name] = type(m).__name__

        hooks.append(sub.register_forward_hook(hook))
    flags = torch.backends.cudnn.flags(enabled=True, benchmark=False, allow_tf32=dtype != torch.float32)
    try:
        with torch.inference_mode(), flags:
            module(*[torch.from_numpy(feed[n]).to(device, dtype) for n in input_names])
    finally:
        for h in hooks:
            h.remove()
    return outputs, kinds


def bisect(
    artifact: str | Path,
    spec: "ModelSpec | str",
    *,
    weights=None,
    precision: str | Precision = Precision.FP32,
    tolerances: Tolerances | None = None,
    batch: int = 1,
    time: int = 50,
    source: str = "speech",
) -> BisectResult:
    from .resolve import resolve_spec
    from . import formats
    from .formats import detect_format

    spec = resolve_spec(spec)  # a registered name too, as check() takes
    artifact = artifact.path if isinstance(artifact, Artifact) else artifact
    fmt = formats.get(detect_format(artifact))
    if not fmt.has_layer_taps:
        taps = [f.title for f in formats.registered() if f.has_layer_taps]
        raise UnsupportedError(f"layer bisection is not available for {fmt.format.value} artifacts "
                               f"({' and '.join(taps)} only)")

    precision = Precision.parse(precision)
    tolerances = tolerances or spec.tolerances
    feed = spec.example_inputs(batch=batch, time=time if spec.has_dynamic_time else None, source=source)
    module = spec.build(weights)
    expected, kinds = torch_module_outputs(module, feed, spec.input_names)
    tensors, mixed, got = fmt.layer_outputs(artifact, module, feed, spec, expected)
    layers, skipped = _compare_layers(expected, kinds, got, tensors, mixed,
                                      tolerances.get(precision, spec.output_names[0]))
    return BisectResult(spec.name, str(artifact), precision.value, layers, skipped, batch=batch,
                        time=_time_of(feed, spec), source=source)


def bisect_torch(runner, spec: ModelSpec, *, weights=None, precision: str | Precision = Precision.FP32,
                 tolerances: Tolerances | None = None, batch: int = 1, time: int = 50,
                 source: str = "speech") -> BisectResult:
    """A PyTorch runner on another device or dtype (the matrix's CUDA fp16 rows) against the CPU fp32 original,
    module by module: both run eagerly with forward hooks on the same module tree (a CUDA-graph runner's module is
    what its graph replays)."""
    precision = Precision.parse(precision)
    tolerances = tolerances or spec.tolerances
    feed = spec.example_inputs(batch=batch, time=time if spec.has_dynamic_time else None, source=source)
    expected, kinds = torch_module_outputs(spec.build(weights), feed, spec.input_names)
    runner.load()
    got, _ = torch_module_outputs(runner.module, feed, spec.input_names)
    layers, skipped = _compare_layers(expected, kinds, got, {name: name for name in got}, set(),
                                      tolerances.get(precision, spec.output_names[0]))
    return BisectResult(spec.name, "", precision.value, layers, skipped, runtime=runner.runtime, batch=batch,
                        time=_time_of(feed, spec), source=source)


def _time_of(feed: dict, spec: ModelSpec) -> int:
    first = feed[spec.input_names[0]]
    return int(first.shape[1]) if first.ndim > 1 else 1


def _compare_layers(expected: dict, kinds: dict, got: dict, tensors: dict, mixed: set, tol
                    ) -> tuple[tuple[LayerError, ...], tuple[str, ...]]:
    names = list(expected)
    got_by_tensor = {name: tensors.get(name) for name in names if name in got}
    layers, skipped = [], []
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
    return tuple(layers), tuple(skipped)


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
