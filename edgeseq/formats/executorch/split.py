"""The model cut at its GRU recurrences into delegated methods the runner chains (torch only, no ExecuTorch here).

Why: torch.export specializes T through nn.GRU, and a GRU written as a loop (torch's scan) keeps T dynamic but its
body runs on ExecuTorch's portable kernels, ~16x slower than XNNPACK (docs/formats.md, ExecuTorch). So the model is
exported once with the TFLite path's `LoopGRU` rewrite (the recurrence is one opaque op, `edgeseq::gru_scan`, its
input projection already hoisted out), the graph is cut at every gru_scan, and:

- each piece between recurrences becomes a method with a dynamic T (convolutions, highway, the GRU's input
  projection, the output linear: all XNNPACK);
- each recurrence becomes a static method running K steps of every direction with the hidden state as input and
  output (unrolled, XNNPACK); the runner calls it ceil(T / K) times. gru_scan takes its input in scan order (the
  backward direction already time-flipped), so the zero padding of the last chunk comes after every valid step and
  never reaches a valid output: exact at every T.

Batch is 1 in every method (ExecuTorch plans memory for each dynamic axis' upper bound); the runner runs a batch row
by row, which is exact since rows never mix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import fx, nn
from torch.nn import functional as F

from ...errors import ExportError

# the recurrence ops (rewrites.py, tflite/rewrites.py) -> their layout
SCAN_OPS = {"gru_seq_len": "seq", "gru_seq": "seq", "gru_scan": "scan"}


class ScanChunk(nn.Module):
    """K steps of a (bi)GRU recurrence: gi [K, D, 1, 3H] in scan order, h [D, 1, H] -> (y [K, D, 1, H], h).

    Each step is one fully-connected op per direction (h @ W_hh + b_hh, every gate at once; XNNPACK packs its
    weights once at load) and the gates computed for all directions together, one sigmoid over all three (each op
    has a fixed cost that dwarfs its few hundred values); the steps' inputs are static slices of gi. Every op, slices
    included, is XNNPACK's: one delegate call a chunk. XNNPACK's batched matmul (the former formulation, one per
    gate) takes both operands as dynamic: a step cost 1.2-1.8x this one's (bench/bench_executorch_scan.py)."""

    def __init__(self, w_hh: torch.Tensor, b_hh: torch.Tensor, steps: int):
        super().__init__()
        self.directions, self.hidden, self.steps = int(w_hh.shape[0]), int(w_hh.shape[-1]), steps
        for d in range(self.directions):  # w_hh [D, 3H, H], b_hh [D, 1, 3H]: F.linear's layout per direction
            self.register_buffer(f"w_{d}", w_hh.detach()[d].contiguous().clone())
            self.register_buffer(f"b_{d}", b_hh.detach()[d].reshape(-1).contiguous().clone())

    def forward(self, gi: torch.Tensor, h: torch.Tensor):
        d, hidden = self.directions, self.hidden
        gi = gi.reshape(self.steps * d, 1, 3 * hidden)  # step t's rows are t*D .. t*D + D - 1: static slices
        outs = []
        for t in range(self.steps):
            gh = [F.linear(h[k:k + 1], getattr(self, f"w_{k}"), getattr(self, f"b_{k}")) for k in range(d)]
            gh = torch.cat(gh, 0) if d > 1 else gh[0]  # [D, 1, 3H]
            x = gi[t * d:(t + 1) * d]
            gates = torch.sigmoid(x + gh)  # r and z; the n third is not used: two slices fewer than slicing first
            n = torch.tanh(x[..., 2 * hidden:] + gates[..., :hidden] * gh[..., 2 * hidden:])
            h = n + gates[..., hidden:2 * hidden] * (h - n)
            outs.append(h)
        return torch.cat(outs, 0).reshape(self.steps, d, 1, hidden), h


@dataclass
class Piece:
    """One method between recurrences: its graph, the values it takes / gives (names in the plan), and the time
    axis of each tensor input (None: static)."""

    name: str
    module: fx.GraphModule
    inputs: list[str]
    outputs: list[str]
    time_axes: list[int | None] = field(default_factory=list)
    examples: tuple = ()


@dataclass
class Scan:
    name: str
    gi: str
    h0: str | None
    output: str
    w_hh: torch.Tensor
    b_hh: torch.Tensor
    layout: str = "seq"
    lengths: str | None = None  # the value holding each row's length (a packed batch), None: every row is T long

    @property
    def directions(self) -> int:
        return int(self.w_hh.shape[0])

    @property
    def hidden(self) -> int:
        return int(self.w_hh.shape[-1])


def _layout(node) -> str | None:
    """'seq' (gi [B, T, D*3H], every direction in time order) or 'scan' (gi [T, D, B, 3H] in scan order) for a
    recurrence op, None for any other node."""
    if node.op != "call_function":
        return None
    return next((layout for op, layout in SCAN_OPS.items() if f"edgeseq.{op}" in str(node.target)), None)


def _is_scan(node) -> bool:
    return _layout(node) is not None


def _record(gm: fx.GraphModule, args: tuple) -> dict:
    env = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n):
            env[n.name] = value = super().run_node(n)
            return value

    Recorder(gm).run(*args)
    return env


def _attr(gm, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def split_program(module: nn.Module, args: tuple, dynamic_shapes, probe_args: tuple, time_of) -> tuple:
    """(steps, inputs, outputs): the pieces and scans in run order, and the plan names of the model's inputs and
    outputs.
    `args` / `probe_args` are the example inputs at two different T; `time_of(args)` gives T for them."""
    try:
        ep = torch.export.export(module, args, dynamic_shapes=dynamic_shapes, strict=False)
    except Exception as exc:
        raise _ExportFailed(exc) from None
    gm = ep.module()
    gm.graph.eliminate_dead_code()  # e.g. a GRU's final states the model never reads
    gm.recompile()
    nodes = list(gm.graph.nodes)
    env_a, env_b = _record(gm, args), _record(gm, probe_args)
    t_a, t_b = time_of(args), time_of(probe_args)

    def time_axis(name):
        a, b = env_a[name], env_b[name]
        if not isinstance(a, torch.Tensor):
            return None
        axes = [i for i, (x, y) in enumerate(zip(a.shape, b.shape)) if x != y]
        if not axes:
            return None
        if len(axes) > 1 or a.shape[axes[0]] != t_a or b.shape[axes[0]] != t_b:
            raise ExportError(f"a tensor between the GRUs ({name}, shape {list(a.shape)} at T={t_a}) has a length "
                              "axis that is not T itself; this split needs T-preserving layers around each GRU")
        return axes[0]

    # each node runs in the first piece where all its inputs exist (a scan's output exists from the piece after
    # it), not in the piece its place in the trace gives: a streaming model's state slices come last in the trace,
    # but read tensors context + T long that must not cross a cut
    part, seen = {}, 0
    for node in nodes:
        if _is_scan(node):
            seen += 1
            part[node] = -seen
        elif node.op not in ("placeholder", "output", "get_attr"):
            part[node] = max((abs(part[a]) for a in node.all_input_nodes if a in part), default=0)
    n_parts = seen + 1
    output_node = nodes[-1]
    returned = output_node.args[0]
    flat_outputs = list(returned) if isinstance(returned, (list, tuple)) else [returned]

    def users_outside(node, p):
        return any(part.get(u) != p for u in node.users)

    def _build_piece(p, members):
        """The method for the nodes between two recurrences (None when none of them is needed later)."""
        graph = fx.Graph()
        mapping, inputs, time_axes, examples = {}, [], [], []
        outer = []
        for n in members:
            for a in n.all_input_nodes:
                if a not in mapping and part.get(a) != p and a.op != "get_attr" and a not in outer:
                    outer.append(a)
        tensor_outer = [a for a in outer if isinstance(env_a[a.name], torch.Tensor)]
        for a in tensor_outer:
            ph = graph.placeholder(a.name)
            mapping[a] = ph
            inputs.append(a.name)
            time_axes.append(time_axis(a.name))
            examples.append(env_a[a.name])
        for a in outer:
            if a in mapping:
                continue
            value = env_a[a.name]  # a size crossing the cut: T again, taken from a tensor input here
            src = next(((ph, ax) for ph, ax in zip(tensor_outer, time_axes) if ax is not None), None)
            if src is None or value != t_a or env_b[a.name] != t_b:
                raise ExportError(f"a value crossing a GRU ({a.name} = {value}) is neither a tensor nor T")
            mapping[a] = graph.call_function(torch.ops.aten.sym_size.int, (mapping[src[0]], src[1]))
        for n in members:
            for a in n.all_input_nodes:
                if a.op == "get_attr" and a not in mapping:
                    mapping[a] = graph.get_attr(a.target)
            mapping[n] = graph.node_copy(n, mapping.__getitem__)
            mapping[n].meta = {}  # the first trace's shapes and ranges: the re-export derives its own
        outs = [n for n in members if isinstance(env_a[n.name], torch.Tensor)
                and (users_outside(n, p) or n in flat_outputs)]
        if not outs:
            return None
        graph.output(tuple(mapping[n] for n in outs))
        piece = fx.GraphModule(gm, graph, class_name=f"Piece{p}")
        return Piece(f"piece_{p}", piece, inputs, [n.name for n in outs], time_axes, tuple(examples))

    steps = []
    for p in range(n_parts):
        members = [n for n in nodes if part.get(n) == p]
        if members or p == 0:
            piece = _build_piece(p, members)
            if piece is not None:
                steps.append(piece)
        scan = next((n for n in nodes if part.get(n) == -(p + 1)), None)
        if scan is not None:
            gi, w_hh, b_hh, h0, lengths = (list(scan.args) + [None] * 5)[:5]
            if w_hh.op != "get_attr" or b_hh.op != "get_attr":
                raise ExportError("a GRU's recurrent weights are computed in the graph, not stored; cannot cut there")
            layout = _layout(scan)
            if time_axis(gi.name) != (1 if layout == "seq" else 0):
                raise ExportError("a GRU's input projection has its time axis elsewhere than the rewrite put it")
            steps.append(Scan(f"gru_{p}", gi.name, h0.name if h0 is not None else None, scan.name,
                              _attr(gm, w_hh.target), _attr(gm, b_hh.target), layout,
                              lengths.name if lengths is not None else None))
    for out in flat_outputs:
        if not isinstance(env_a.get(getattr(out, "name", None)), torch.Tensor):
            raise ExportError("a model output is not a tensor")
    inputs = [n.name for n in nodes if n.op == "placeholder"]
    return steps, inputs, [n.name for n in flat_outputs]


class _ExportFailed(Exception):
    def __init__(self, exc):
        super().__init__(str(exc))
        self.original = exc
