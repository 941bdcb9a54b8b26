"""A user's own module as a ModelSpec: declared once (inputs, dynamic axes whatever they are called, integer value
ranges, sequence lengths), then exported, checked, profiled and bisected like a registered model
(ModelSpec.from_module)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..tensors import TensorSpec
from .axes import BATCH, TIME

FULL_TIME_SWEEP, FULL_BATCH_SWEEP = (1, 7, 50, 200, 1000), (1, 3)
PROBE_EXTRA_TIME, PROBE_EXTRA_BATCH = 5, 1  # the second run that shows which output axes vary with the inputs


def spec_from_module(cls, module: nn.Module, example_inputs, input_names=None, output_names=None, dynamic_axes=None,
                     name: str | None = None, *, value_ranges: dict | None = None, lengths=(),
                     time_sweep: tuple[int, ...] | None = None, batch_sweep: tuple[int, ...] | None = None,
                     frames_per_second: float | None = None, bidirectional_outputs=(), state=None):
    """See ModelSpec.from_module."""
    if not isinstance(module, nn.Module):
        raise InputError(f"expected a torch.nn.Module, got {type(module).__name__}")
    if isinstance(example_inputs, dict):
        input_names = list(input_names or example_inputs)
        missing = [n for n in input_names if n not in example_inputs]
        if missing:
            raise InputError(f"example_inputs has no {missing}; it has {sorted(example_inputs)}")
        arrays = [_to_numpy(example_inputs[n]) for n in input_names]
    else:
        if isinstance(example_inputs, (torch.Tensor, np.ndarray)):
            example_inputs = (example_inputs,)
        arrays = [_to_numpy(x) for x in example_inputs]
        input_names = list(input_names or [f"input_{i}" for i in range(len(arrays))])
    if len(input_names) != len(arrays):
        raise InputError(f"{len(input_names)} input names for {len(arrays)} example inputs")
    module = module.eval()
    outs = _run(module, arrays)
    output_names = list(output_names or [f"output_{i}" for i in range(len(outs))])
    if len(output_names) != len(outs):
        raise InputError(f"{len(output_names)} output names for the {len(outs)} outputs the module returns")
    axes = _check_axes(dynamic_axes or {}, input_names, output_names, arrays, outs)
    bidirectional_outputs = (bidirectional_outputs,) if isinstance(bidirectional_outputs, str) else tuple(
        bidirectional_outputs)
    state = _state_pairs(state, input_names, output_names, arrays, outs)
    unknown = [n for n in bidirectional_outputs if n not in output_names]
    if unknown:
        raise InputError(f"bidirectional_outputs names {unknown}, which the module does not return; its outputs: "
                         f"{output_names}")
    roles = _roles(axes, input_names)
    rename = lambda d: roles.get(d, d)  # noqa: E731 - the user's axis names -> batch / time where they play that role

    def declare(nm: str, shape, dtype: str) -> TensorSpec:
        named = axes.get(nm, {})
        return TensorSpec(nm, tuple(rename(named[i]) if i in named else int(d) for i, d in enumerate(shape)), dtype)

    inputs = tuple(declare(n, a.shape, str(a.dtype)) for n, a in zip(input_names, arrays))
    sizes = {rename(axes[n][i]): a.shape[i] for n, a in zip(input_names, arrays) for i in axes.get(n, {})}
    ranges, lengths = _value_ranges(inputs, arrays, value_ranges or {}, tuple(lengths), sizes.get(TIME))
    time = sizes.get(TIME, 1)
    batch = sizes.get(BATCH, 1)
    spec = cls(
        name=name or type(module).__name__,
        description=f"user module {type(module).__name__}",
        factory=lambda: module,
        inputs=inputs,
        outputs=tuple(declare(n, tuple(o.shape), str(o.dtype).replace("torch.", "")) for n, o in zip(output_names,
                                                                                                     outs)),
        default_time=time,
        time_sweep=tuple(time_sweep or (FULL_TIME_SWEEP if TIME in sizes else (time,))),
        batch_sweep=tuple(batch_sweep or (FULL_BATCH_SWEEP if BATCH in sizes else (batch,))),
        prebuilt=module,
        value_ranges=ranges,
        lengths=lengths,
        frames_per_second=frames_per_second,
        bidirectional_outputs=bidirectional_outputs,
        state=state,
    )
    object.__setattr__(spec, "_axis_sizes", {k: v for k, v in sizes.items() if k not in (BATCH, TIME)})
    undeclared = [n for n in output_names if n not in axes]
    if undeclared and (BATCH in sizes or TIME in sizes):
        spec = _declare_output_axes(spec, module, undeclared, batch, time)
    return spec


def _to_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _run(module: nn.Module, arrays) -> tuple[torch.Tensor, ...]:
    try:
        with torch.inference_mode():
            outs = module(*[torch.from_numpy(np.ascontiguousarray(a)) for a in arrays])
    except Exception as exc:  # the user's forward refused its own example: say so in one line
        raise InputError(f"the module failed on its example inputs: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:300] if str(exc) else ''}") from None
    outs = outs if isinstance(outs, (tuple, list)) else (outs,)
    bad = [type(o).__name__ for o in outs if not isinstance(o, torch.Tensor)]
    if bad:
        raise InputError(f"the module returns {bad}: edgeseq compares tensor outputs only (return a tensor or a tuple "
                         "of tensors)")
    return tuple(outs)


def _check_axes(dynamic_axes: dict, input_names, output_names, arrays, outs) -> dict[str, dict[int, str]]:
    """{tensor: {axis: name}} with every key a real tensor and every axis inside its rank: a typo would otherwise
    leave an axis static and the export would specialize it without a word."""
    ranks = {**{n: a.ndim for n, a in zip(input_names, arrays)}, **{n: o.dim() for n, o in zip(output_names, outs)}}
    out = {}
    for tensor, named in dynamic_axes.items():
        if tensor not in ranks:
            raise InputError(f"dynamic_axes names {tensor!r}, which is neither an input nor an output "
                             f"(inputs {list(input_names)}, outputs {list(output_names)})")
        if isinstance(named, (list, tuple)):  # torch.onnx's list form: axes without names
            named = {i: f"{tensor}_axis{i}" for i in named}
        fixed = {}
        for axis, label in dict(named).items():
            axis = int(axis)
            if not -ranks[tensor] <= axis < ranks[tensor]:
                raise InputError(f"dynamic_axes[{tensor!r}] names axis {axis}; {tensor!r} has {ranks[tensor]} axes")
            fixed[axis % ranks[tensor]] = str(label)
        out[tensor] = fixed
    return out


def _roles(axes: dict, input_names) -> dict[str, str]:
    """Which declared axis names are the batch and the time axis, whatever they are called: the first input's
    axis 0, when dynamic, is the batch; its first other dynamic axis is time ([B, T, C] and channels-first
    [B, C, T] alike). Names already "batch" / "time" keep their role."""
    first = axes.get(input_names[0], {}) if input_names else {}
    roles = {}
    if 0 in first:
        roles[first[0]] = BATCH
    others = [first[i] for i in sorted(first) if i != 0]
    if others:
        roles[others[0]] = TIME
    for names in axes.values():
        for label in names.values():
            if label in (BATCH, TIME):
                roles.setdefault(label, label)
    if len(set(roles.values())) != len(roles):
        raise InputError(f"the dynamic axes {sorted(roles)} cannot all be the batch or the time axis; name the "
                         "batch axis 0 of the first input and the time axis another of its axes")
    return roles


def _value_ranges(inputs, arrays, declared: dict, lengths: tuple, time: int | None):
    """Integer inputs get valid values in every generated feed (sweeps, probes, calibration): declared ranges, a
    lengths input (each row's valid length on the time axis), else the range its example values span."""
    names = {t.name for t in inputs}
    for key in list(declared) + list(lengths):
        if key not in names:
            raise InputError(f"{key!r} is not an input of the module (inputs {sorted(names)})")
    ranges = {}
    found = list(lengths)
    for t, a in zip(inputs, arrays):
        if t.name in declared:
            low, high = declared[t.name]
            if not (isinstance(low, int) and isinstance(high, int) and low <= high):
                raise InputError(f"value range of {t.name!r} must be two integers low <= high, got {(low, high)}")
            ranges[t.name] = (low, high)
        elif np.dtype(t.dtype).kind in "iu" and t.name not in found and a.size:
            # a 1-D batch-sized integer input whose largest value is the example's T: sequence lengths
            if a.ndim == 1 and t.shape[0] == BATCH and time is not None and int(a.max()) == time and a.min() >= 1:
                found.append(t.name)
            else:
                ranges[t.name] = (int(a.min()), int(a.max()))
    for name in found:
        t = next(t for t in inputs if t.name == name)
        if np.dtype(t.dtype).kind not in "iu" or len(t.shape) != 1:
            raise InputError(f"lengths input {name!r} must be a 1-D integer tensor (one length per row)")
    return ranges, tuple(found)


def _declare_output_axes(spec, module: nn.Module, names: list[str], batch: int, time: int):
    """Output axes the user left undeclared: run once more at another batch and T and mark the axes that follow
    them, so the export declares them symbolic; an axis that varies otherwise is an error naming it."""
    probe_batch = batch + PROBE_EXTRA_BATCH if BATCH in _input_axes(spec) else batch
    feed = spec.example_inputs(batch=probe_batch, time=time + PROBE_EXTRA_TIME, source="random", seed=1)
    outs = dict(zip(spec.output_names, _run(module, [feed[n] for n in spec.input_names])))
    new = []
    for t in spec.outputs:
        if t.name not in names:
            new.append(t)
            continue
        shape = []
        for i, (was, now) in enumerate(zip(t.shape, outs[t.name].shape)):
            if was == now:
                shape.append(was)
            elif (was, now) == (batch, probe_batch):
                shape.append(BATCH)
            elif (was, now) == (time, time + PROBE_EXTRA_TIME):
                shape.append(TIME)
            else:
                raise InputError(f"output {t.name!r} axis {i} changes with the inputs ({was} -> {now}) but is neither "
                                 f"the batch nor the time axis: declare it in dynamic_axes[{t.name!r}]")
        new.append(TensorSpec(t.name, tuple(shape), t.dtype))
    return dataclasses.replace(spec, outputs=tuple(new))


def _input_axes(spec) -> set[str]:
    return {d for t in spec.inputs for d in t.shape if isinstance(d, str)}


def _state_pairs(state, input_names, output_names, arrays, outs) -> tuple[tuple[str, str], ...]:
    """{state input: the output carrying it to the next call}: both must exist and have the same shape."""
    if not state:
        return ()
    if not isinstance(state, dict):
        raise InputError(f"state must be a dict {{state input: its next-call output}}, got {type(state).__name__}")
    pairs = []
    for name, out in state.items():
        if name not in input_names:
            raise InputError(f"state names input {name!r}, which the module does not take; its inputs: {input_names}")
        if out not in output_names:
            raise InputError(f"state pairs {name!r} with output {out!r}, which the module does not return; its "
                             f"outputs: {output_names}")
        have, give = arrays[input_names.index(name)].shape, tuple(outs[output_names.index(out)].shape)
        if tuple(have) != give:
            raise InputError(f"state input {name!r} has shape {list(have)} but output {out!r} returns {list(give)}: "
                             "the output must carry the state to the next call unchanged in shape")
        pairs.append((name, out))
    return tuple(pairs)
