"""The .pte's precisions below fp32, applied to the dynamic-T methods (the convolutions, projections, highway and
the GRUs' input projections: nearly all the FLOPs). The recurrence methods stay fp32: K small steps whose hidden
state would be requantized at every step, and XNNPACK's quantizer leaves the GRU's matmuls float anyway.

- fp16: each method computes in half precision inside (weights and activations), its inputs and outputs stay fp32,
  so the runner's plan and the recurrence methods do not change;
- int8-dynamic: XNNPACK's PT2E quantizer, dynamic per-token activations and per-channel int8 weights on every
  linear (the exporter writes the convolutions as linears); no calibration data, like ONNX / TFLite int8-dynamic.
- int8-static: the same quantizer with static activation ranges on the convolutions only (the conv bank and
  projections, as edgeseq's ONNX and TFLite int8-static: the highway and projection linears after them multiply
  the error for no speed), calibrated by running the whole plan (every method, the recurrences between them, in
  order) on the model's calibration inputs in PyTorch, so each method's observers see the values the previous
  methods really hand it.
"""

from __future__ import annotations

import torch

from ...enums import Precision

WEIGHTED = ("linear", "conv1d", "conv2d", "convolution")


def lower_precision(program, examples: tuple, dynamic_shapes, precision: Precision) -> tuple:
    """An exported dynamic-T method -> (the same method at `precision`, exported again; {"int8": {op: n}, "float":
    {op: n}}: which weighted ops the quantizer took and which it left float). fp32 and fp16 come back unchanged /
    all in half, with an empty census."""
    if precision is Precision.FP32:
        return program, {}
    census = {}
    if precision is Precision.FP16:  # forward(*args): torch.export names the shapes by that parameter
        module, dynamic_shapes = _Half(program.module()), {"args": dynamic_shapes}
    else:
        module = _int8_dynamic(program.module(), examples)
        census = weighted_ops(module)
    return torch.export.export(module, examples, dynamic_shapes=dynamic_shapes, strict=False), census


def conv_weights(module) -> set[str]:
    """The names of the model's convolution weights (a GEMM-written one, rewrites.Im2colConv, is still a
    convolution), as the exported methods' get_attr nodes name them."""
    from .rewrites import Im2colConv

    names = set()
    for path, sub in module.named_modules():
        if isinstance(sub, (torch.nn.modules.conv._ConvNd, Im2colConv)):
            own = [*sub.named_parameters(recurse=False), *sub.named_buffers(recurse=False)]
            names |= {f"{path}.{name}" if path else name for name, _ in own}
    return names


def int8_static(programs: dict, pieces: dict, meta: dict, feeds, convs: set[str]) -> tuple[dict, dict]:
    """{method: exported fp32 program} -> the same with each dynamic-T method (`pieces`: {name: (examples, dynamic
    shapes)}) quantized with static ranges on the ops whose weight is in `convs`, and the merged census. The
    recurrence methods run in the calibration as they are, and stay fp32."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from .plan_exec import PlanProgram

    activations = {torch.ops.aten.relu.default, torch.ops.aten.relu_.default, torch.ops.aten.hardtanh.default,
                   torch.ops.aten.hardtanh_.default}

    def is_conv(node) -> bool:
        """Asked of every node of a pattern: a conv, its weight and bias, and the activation fused after it pass
        (XNNPACK annotates a conv followed by relu only as the pair)."""
        if node.op != "call_function":
            return True
        if node.target in activations:
            return bool(node.args) and getattr(node.args[0], "op", "") == "call_function" and is_conv(node.args[0])
        weight = node.args[1] if len(node.args) > 1 else None
        return getattr(weight, "op", "") == "get_attr" and weight.target in convs

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    quantizer.set_filter_function(is_conv)
    prepared = {name: prepare_pt2e(programs[name].module(), quantizer) for name in pieces}
    plan = PlanProgram(None, meta, {name: _Eager(prepared[name] if name in prepared else program.module())
                                    for name, program in programs.items()})
    with torch.no_grad():
        for feed in feeds:
            for row in plan.rows(feed):
                plan.run_row(row)
    out, census = dict(programs), {"int8": {}, "float": {}}
    for name, module in prepared.items():
        converted = _drop_unused(convert_pt2e(module))
        add_census(census, weighted_ops(converted))
        examples, shapes = pieces[name]
        out[name] = torch.export.export(converted, examples, dynamic_shapes=shapes, strict=False)
    return out, census


class _Eager:
    """A method of the plan as PyTorch runs it (plan_exec calls execute(list of tensors) -> list of tensors)."""

    def __init__(self, module):
        self.module = module

    def execute(self, inputs: list) -> list:
        out = self.module(*inputs)
        return list(out) if isinstance(out, (tuple, list)) else [out]


def add_census(total: dict, census: dict) -> None:
    """Adds one method's {"int8": {op: n}, "float": {op: n}} into the program's."""
    for kind, ops in census.items():
        bucket = total.setdefault(kind, {})
        for op, n in ops.items():
            bucket[op] = bucket.get(op, 0) + n


def weighted_ops(module) -> dict[str, dict[str, int]]:
    """Each linear / convolution of a converted PT2E graph, by whether its weight arrives through a dequantize (the
    quantizer took it) or as a float parameter."""
    census = {"int8": {}, "float": {}}
    for node in module.graph.nodes:
        op = str(getattr(node.target, "__name__", node.target)).split(".")[0]
        if node.op != "call_function" or op not in WEIGHTED or len(node.args) < 2:
            continue
        weight = node.args[1]
        kind = "int8" if "dequantize" in str(getattr(weight, "target", "")) else "float"
        census[kind][op] = census[kind].get(op, 0) + 1
    return census


def _int8_dynamic(module, examples: tuple):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True))
    prepared = prepare_pt2e(module, quantizer)
    prepared(*examples)  # dynamic activations need no statistics; the pass still wants one run
    return _drop_unused(convert_pt2e(prepared))


def _drop_unused(module):
    """convert_pt2e folds each quantized weight into a new int8 constant but keeps the float parameter it came from;
    torch.export would lift it too, and the .pte would carry both (cbhg: 16.5 MB against fp32's 13.7 MB)."""
    used = {node.target for node in module.graph.nodes if node.op == "get_attr"}
    for name, _ in [*module.named_parameters(), *module.named_buffers()]:
        if name not in used:
            owner, _, leaf = name.rpartition(".")
            delattr(module.get_submodule(owner) if owner else module, leaf)
    return module


class _Half(torch.nn.Module):
    """Runs `inner` in half precision between fp32 inputs and outputs (integer inputs such as lengths pass as they
    are)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner.half()

    def forward(self, *args):
        outs = self.inner(*(a.half() if a.is_floating_point() else a for a in args))
        if isinstance(outs, torch.Tensor):
            return outs.float()
        return type(outs)(o.float() if o.is_floating_point() else o for o in outs)
