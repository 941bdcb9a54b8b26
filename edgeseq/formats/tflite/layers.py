"""Intermediate tensors of a .tflite keyed to PyTorch module paths, for layer bisection.

litert-torch names every tensor after the module stack of the op that made it: one `<class>_<name>` component per
*called* module, e.g. `...CBHG/torch.nn.modules.container.Sequential_highway/edgeseq.models.cbhg.Highway_1/
torch.nn.modules.linear.Linear_h` is module `highway.1.h`. Containers that are never called (ModuleList) leave no
component, so `bank.convs.3` appears as `ConvBank_bank/ConvBN_3`; a fused op carries several locations joined by
`;;`, and a repeated name gets a `;N` suffix. A module's output is the output of the last op (in execution order)
inside its scope, as for ONNX.

The interpreter runs with the reference kernels and `experimental_preserve_all_tensors`, so every intermediate is
still readable after invoke (XNNPACK would fuse them away). Quantized tensors are dequantized with their own scale
and zero point. Layouts differ (a Conv1d output is [B, C, T] in PyTorch and NHWC [B, 1, T, C] here):
`align_to` tries the reshapes and transposes that could relate the two.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from ..._lazy import require

EXTRA = "tflite"


def _scope_chains(module) -> dict[tuple[str, ...], str]:
    """(last name component of each called module on the path) -> module path, for every named submodule."""
    from torch import nn

    uncalled = (nn.ModuleList, nn.ModuleDict)
    modules = dict(module.named_modules())
    chains: dict[tuple[str, ...], list[str]] = {}
    for path in modules:
        if not path:
            continue
        parts = path.split(".")
        chain = tuple(parts[i] for i in range(len(parts))
                      if not isinstance(modules[".".join(parts[: i + 1])], uncalled))
        if chain and not isinstance(modules[path], uncalled):
            chains.setdefault(chain, []).append(path)
    # two ModuleLists side by side (a bank and the projections) give their members the same chain ('0', 'conv'):
    # such tensors cannot be told apart by name, so those modules stay unmapped (listed as skipped, never blamed)
    return {chain: paths[0] for chain, paths in chains.items() if len(paths) == 1}


def _locations(tensor_name: str) -> list[tuple[str, ...]]:
    """Tensor name -> the attribute chains of its locations (the root module's component dropped)."""
    out = []
    for loc in tensor_name.split(";;"):
        loc = loc.split(";")[0]
        comps = loc.split("/")[1:]
        chain = []
        for comp in comps:
            cls, _, name = comp.rpartition(".")[2].partition("_")
            if not cls or not name:
                break
            chain.append(name)
        if chain:
            out.append(tuple(chain))
    return out


def _interpreter(path: str | Path):
    require("ai_edge_litert.interpreter", EXTRA, quiet=True)
    import warnings

    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "preserve_all_tensors is for debugging": that is what this is
        return Interpreter(model_path=str(path), experimental_preserve_all_tensors=True,
                           experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)


def module_tensors(path: str | Path, module) -> tuple[dict[str, int], set[str]]:
    """Module path -> index of the tensor holding that module's output in the main subgraph; and the modules whose
    tensor comes from an op the converter fused with code outside the module (a Linear with the functional ReLU
    that follows it): those tensors are not the module's own output and cannot convict it."""
    interp = _interpreter(path)
    details = {d["index"]: d for d in interp.get_tensor_details()}
    chains = _scope_chains(module)
    last: dict[str, int] = {}
    mixed: set[str] = set()
    for op in interp._get_ops_details():  # execution order of the main subgraph
        outputs = [int(i) for i in op["outputs"] if int(i) >= 0]
        if not outputs:
            continue
        tensor = outputs[0]
        if not _is_activation(details[tensor]):
            continue
        locations = _locations(details[tensor]["name"])
        for chain in locations:  # a fused op (conv + its ReLU) belongs to every module it came from
            for n in range(len(chain), 0, -1):
                owner = chains.get(chain[:n])
                if owner is not None:
                    last[owner] = tensor
                    outside = any(other[:n] != chain[:n] for other in locations)
                    (mixed.add if outside else mixed.discard)(owner)
    return last, mixed


def _is_activation(detail: dict) -> bool:
    """Float tensors and quantized ones; not the int32 shape arithmetic that dynamic shapes add."""
    dtype = np.dtype(detail["dtype"])
    if np.issubdtype(dtype, np.floating):
        return True
    scale = (detail.get("quantization") or (0.0, 0))[0]
    return np.issubdtype(dtype, np.integer) and bool(scale)


def intermediate_outputs(path: str | Path, feed: dict[str, np.ndarray], input_names: list[str],
                         tensors: dict[str, int]) -> dict[str, np.ndarray]:
    """Run once on the reference kernels and read every requested tensor back as float32."""
    interp = _interpreter(path)
    details = interp.get_input_details()
    for det, name in zip(details, input_names):
        interp.resize_tensor_input(det["index"], list(feed[name].shape), strict=False)
    interp.allocate_tensors()
    for det, name in zip(details, input_names):
        interp.set_tensor(det["index"], np.ascontiguousarray(feed[name], dtype=det["dtype"]))
    interp.invoke()
    by_index = {d["index"]: d for d in interp.get_tensor_details()}
    out = {}
    for module, index in tensors.items():
        value = np.array(interp.get_tensor(index))
        scale, zero = by_index[index].get("quantization", (0.0, 0))
        if np.issubdtype(value.dtype, np.integer) and scale:
            value = (value.astype(np.float32) - zero) * scale
        out[module] = value.astype(np.float32, copy=False)
    return out


def align_to(expected: np.ndarray, value: np.ndarray) -> list[np.ndarray]:
    """Views of `value` in `expected`'s layout: a plain reshape, the transposes of the squeezed tensors that give the
    same squeezed shape, and, where one axis is longer (a conv whose 'same' padding moved inside it, cropped after),
    its first or last frames. Empty when nothing fits."""
    out = [value] if value.shape == expected.shape else []
    if value.size == expected.size and not out:
        out.append(value.reshape(expected.shape))
    v, e = np.squeeze(value), np.squeeze(expected)
    if v.ndim != e.ndim or v.ndim > 5:
        return out
    for perm in itertools.permutations(range(v.ndim)):
        shape = tuple(v.shape[p] for p in perm)
        longer = [a for a in range(v.ndim) if shape[a] != e.shape[a]]
        if not longer:
            if perm != tuple(range(v.ndim)) or value.size != expected.size or value.shape != expected.shape:
                out.append(np.transpose(v, perm).reshape(expected.shape))
        elif len(longer) == 1 and shape[longer[0]] > e.shape[longer[0]]:
            t = np.transpose(v, perm)
            axis, n = longer[0], e.shape[longer[0]]
            for window in (slice(0, n), slice(shape[axis] - n, shape[axis])):
                index = [slice(None)] * v.ndim
                index[axis] = window
                out.append(np.ascontiguousarray(t[tuple(index)]).reshape(expected.shape))
    return out


def best_layout(expected: np.ndarray, value: np.ndarray) -> np.ndarray | None:
    """The candidate layout of a TFLite tensor closest to PyTorch's (NHWC vs NCW, split directions, ...)."""
    candidates = align_to(expected, value)
    if not candidates:
        return None
    errors = [float(np.linalg.norm(c - expected)) for c in candidates]
    return candidates[int(np.argmin(errors))]


def aligned_outputs(path, feed: dict, input_names: list[str], tensors: dict, expected: dict) -> dict:
    """The tapped tensors in PyTorch's layout, for the modules the reference has (None where none fits)."""
    got = intermediate_outputs(path, feed, input_names, tensors)
    got = {name: best_layout(expected[name], value) for name, value in got.items() if name in expected}
    return {name: value for name, value in got.items() if value is not None}
