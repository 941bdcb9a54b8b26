"""The structural check of a saved .mlpackage, done with its protobuf spec alone (no Core ML framework, so on any
OS): the program's functions and their opset, an op census over every block (loop bodies included), which ops are
`while_loop`s and what their bodies hold, and the declared inputs / outputs with their flexible-shape ranges.

It is what can be proven on Linux about a Core ML artifact; parity needs Core ML itself (macOS)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field

# Core ML's ArrayFeatureType.ArrayDataType values (FeatureTypes.proto)
_ARRAY_TYPES = {65568: "float32", 65552: "float16", 65600: "float64", 131104: "int32", 131080: "int8"}
STRUCTURE_KEY = "edgeseq.coreml_structure"  # the record below as JSON, in the model's user_defined_metadata


@dataclass(frozen=True)
class TensorRange:
    """One input or output: its name, dtype and, per axis, (lower, upper) (upper -1: unbounded) where the shape
    is flexible, or the fixed size where it is not."""

    name: str
    dtype: str
    shape: tuple[int, ...]  # the default shape the spec records
    ranges: tuple[tuple[int, int], ...] = ()  # per axis, from shapeRange; empty when the shape is fixed / enumerated

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape),
                "ranges": [list(r) for r in self.ranges]}


@dataclass(frozen=True)
class Structure:
    """What the saved program is made of."""

    spec_version: int
    functions: tuple[str, ...]
    opset: str
    ops: dict[str, int] = field(default_factory=dict)  # op type -> count over every block, loop bodies included
    while_loops: tuple[dict, ...] = ()  # {"name": first output, "body_ops": {op type: count}}
    inputs: tuple[TensorRange, ...] = ()
    outputs: tuple[TensorRange, ...] = ()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["functions"], d["while_loops"] = list(self.functions), [dict(w) for w in self.while_loops]
        d["inputs"], d["outputs"] = [t.to_dict() for t in self.inputs], [t.to_dict() for t in self.outputs]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def upper_bound(self, input_name: str, axis: int) -> int | None:
        """The RangeDim upper bound of one input axis (None: not a range)."""
        for t in self.inputs:
            if t.name == input_name and axis < len(t.ranges):
                return t.ranges[axis][1]
        return None

    def note(self) -> str:
        top = ", ".join(f"{k} x{v}" for k, v in sorted(self.ops.items(), key=lambda kv: (-kv[1], kv[0]))[:8])
        ranges = "; ".join(f"{t.name} {'x'.join(f'{lo}..{hi}' if lo != hi else str(lo) for lo, hi in t.ranges)}"
                           for t in self.inputs if t.ranges)
        return (f"Core ML structure: {sum(self.ops.values())} ops in {self.opset} ({top}, ...); "
                f"{len(self.while_loops)} while_loop(s); inputs {ranges or 'fixed'}; "
                f"outputs {', '.join(t.name for t in self.outputs)}")


def read_structure(spec) -> Structure:
    """The Structure of a Model protobuf (ct.utils.load_spec / MLModel.get_spec())."""
    kind = spec.WhichOneof("Type")
    if kind != "mlProgram":
        raise ValueError(f"the model is a Core ML {kind}, not an mlprogram")
    program = spec.mlProgram
    ops: Counter = Counter()
    loops: list[dict] = []
    opsets = set()
    for fname in sorted(program.functions):
        function = program.functions[fname]
        opset = function.opset or next(iter(function.block_specializations), "")
        opsets.add(opset)
        _walk(function.block_specializations[opset], ops, loops)
    return Structure(spec_version=spec.specificationVersion, functions=tuple(sorted(program.functions)),
                     opset=",".join(sorted(opsets)), ops=dict(sorted(ops.items())), while_loops=tuple(loops),
                     inputs=tuple(_tensor(f) for f in spec.description.input),
                     outputs=tuple(_tensor(f) for f in spec.description.output))


def _walk(block, ops: Counter, loops: list[dict]) -> None:
    for op in block.operations:
        ops[op.type] += 1
        if op.type == "while_loop":
            body: Counter = Counter()
            inner: list[dict] = []
            for sub in op.blocks:
                _walk(sub, body, inner)
            ops.update(body)
            loops.append({"name": op.outputs[0].name if op.outputs else "?", "body_ops": dict(sorted(body.items()))})
            loops.extend(inner)
        else:
            for sub in op.blocks:
                _walk(sub, ops, loops)


def _tensor(feature) -> TensorRange:
    which = feature.type.WhichOneof("Type")
    if which != "multiArrayType":
        return TensorRange(feature.name, which or "?", ())
    array = feature.type.multiArrayType
    ranges = tuple((int(r.lowerBound), int(r.upperBound)) for r in array.shapeRange.sizeRanges)
    return TensorRange(feature.name, _ARRAY_TYPES.get(array.dataType, str(array.dataType)),
                       tuple(int(d) for d in array.shape), ranges)
