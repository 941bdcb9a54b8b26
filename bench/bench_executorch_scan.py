"""The .pte's recurrence method, one K-step chunk of a BiGRU, in two formulations timed interleaved: what the
exporter writes (split.ScanChunk: one fully-connected op per direction and step, the gates of both directions
together) against the batched matmul per gate it replaced.

Why it matters: at batch 1 a GRU step is a handful of tiny ops, and XNNPACK's batch-matrix-multiply treats its
weight as a second dynamic input, where a fully-connected op packs its weights once at load. A second table times
one op of each kind the step is made of (64 in a row): each has a fixed cost per call that its 384 values'
arithmetic does not approach, so a step costs about its op count.

    python bench/bench_executorch_scan.py            # H = 64 (cbhg-lite) and 128 (cbhg), K = 8 and 32
    python bench/bench_executorch_scan.py --quick    # smoke test: few rounds, nothing written unless --out
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from _common import add_timing_arguments, print_table, timing_out, write_report
from torch import nn

from edgeseq.environment import fingerprint
from edgeseq.formats.executorch.split import ScanChunk


class BatchedMatmulChunk(nn.Module):
    """The former recurrence method: per step three batched matmuls h [D, 1, H] @ W_gate [D, H, H], the input cut
    into per-step, per-gate slices up front (split / unbind, which stay on portable kernels)."""

    def __init__(self, w_hh: torch.Tensor, b_hh: torch.Tensor, steps: int):
        super().__init__()
        hidden = int(w_hh.shape[-1])
        w_t = w_hh.transpose(1, 2).contiguous()
        for k, gate in enumerate("rzn"):
            self.register_buffer(f"w_{gate}", w_t[..., k * hidden:(k + 1) * hidden].contiguous().clone())
        self.register_buffer("b_n", b_hh[..., 2 * hidden:].contiguous().clone())
        self.steps, self.hidden = steps, hidden

    def forward(self, gi, h):
        xs_r, xs_z, xs_n = (x.unbind(0) for x in gi.split(self.hidden, dim=-1))
        outs = []
        for t in range(self.steps):
            r = torch.sigmoid(xs_r[t] + torch.bmm(h, self.w_r))
            z = torch.sigmoid(xs_z[t] + torch.bmm(h, self.w_z))
            n = torch.tanh(xs_n[t] + r * (torch.bmm(h, self.w_n) + self.b_n))
            h = n + z * (h - n)
            outs.append(h)
        return torch.stack(outs, 0), h


def lower(module: nn.Module, args: tuple):
    """(the loaded program, its method, the number of ops left on portable kernels, export seconds)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    started = time.perf_counter()
    edge = to_edge_transform_and_lower(torch.export.export(module.eval(), args, strict=False),
                                       partitioner=[XnnpackPartitioner()])
    portable = edge.exported_program().graph_module.code.count("_ops_aten_")
    program = Runtime.get().load_program(edge.to_executorch().buffer)
    return program, program.load_method("forward"), portable, time.perf_counter() - started


def measure(hidden: int, steps: int, args) -> dict:
    torch.manual_seed(0)
    d = 2
    w_hh = torch.randn(d, 3 * hidden, hidden) * 0.1
    b_hh = torch.randn(d, 1, 3 * hidden) * 0.1
    b_hh[..., :2 * hidden] = 0  # as LoopGRU leaves it: the reset and update biases folded into the input projection
    gi, h = torch.randn(steps, d, 1, 3 * hidden), torch.randn(d, 1, hidden)
    with torch.no_grad():
        want = ScanChunk(w_hh, b_hh, steps).eval()(gi, h)[0]
    built = {"fully_connected": lower(ScanChunk(w_hh, b_hh, steps), (gi, h)),
             "batched_matmul": lower(BatchedMatmulChunk(w_hh, b_hh, steps), (gi, h))}
    errors = {k: float((m.execute([gi, h])[0] - want).abs().max()) for k, (_, m, _, _) in built.items()}
    samples = {k: [] for k in built}
    for _ in range(args.rounds):
        for k, (_, method, _, _) in built.items():
            t0 = time.perf_counter()
            for _ in range(args.iterations):
                method.execute([gi, h])
            samples[k].append((time.perf_counter() - t0) / args.iterations / steps * 1e6)
    us = {k: float(np.median(v)) for k, v in samples.items()}
    return {"hidden": hidden, "directions": d, "steps": steps, "threads": args.threads,
            "us_per_step": {k: round(v, 3) for k, v in us.items()},
            "ratio_fully_connected_over_batched_matmul": round(us["fully_connected"] / us["batched_matmul"], 3),
            "portable_ops": {k: b[2] for k, b in built.items()},
            "export_s": {k: round(b[3], 1) for k, b in built.items()}, "max_abs_vs_torch": errors}


class OpChain(nn.Module):
    """`count` of one op in a row, each on the previous one's output: what one op costs inside a delegate call."""

    def __init__(self, kind: str, hidden: int, count: int):
        super().__init__()
        self.kind, self.count, self.hidden = kind, count, hidden
        self.register_buffer("w", torch.randn(3 * hidden, hidden) * 0.1)
        self.register_buffer("b", torch.zeros(3 * hidden))

    def forward(self, x):
        for _ in range(self.count):
            if self.kind == "add":
                x = x + 1.0
            elif self.kind == "sigmoid":
                x = torch.sigmoid(x)
            elif self.kind == "slice":
                x = torch.cat([x[..., 1:], x[..., :1]], -1)  # two slices and a concatenation
            else:  # one direction's recurrent fully-connected op, then back to its input's width
                x = torch.nn.functional.linear(x[..., :self.hidden], self.w, self.b)
        return x


def op_costs(hidden: int, args) -> dict:
    """us per op of the ops a step is made of, on a step's own shapes ([D, 1, 3H]; a fully-connected op H -> 3H
    with the slice that feeds it): each XNNPACK op has a fixed cost per call (ExecuTorch's delegate reshapes and sets
    up every operator of the graph at every call) that dwarfs 384 values' arithmetic."""
    count, out = 64, {}
    built = {}
    for kind in ("add", "sigmoid", "slice", "fully_connected"):
        x = torch.randn(2, 1, 3 * hidden)
        built[kind] = (lower(OpChain(kind, hidden, count), (x,)), x)
    samples = {k: [] for k in built}
    for _ in range(args.rounds):
        for k, ((_, method, _, _), x) in built.items():
            t0 = time.perf_counter()
            for _ in range(args.iterations):
                method.execute([x])
            samples[k].append((time.perf_counter() - t0) / args.iterations / count * 1e6)
    for k, v in samples.items():
        ops = 3 if k == "slice" else 2 if k == "fully_connected" else 1
        out[k] = {"ops_per_link": ops, "us_per_link": round(float(np.median(v)), 3),
                  "portable_ops": built[k][0][2]}
    return {"hidden": hidden, "links": count, "ops": out}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", nargs="+", type=int, default=[64, 128])
    p.add_argument("--steps", nargs="+", type=int, default=[8, 32])
    add_timing_arguments(p, rounds=15, iterations=100)
    args = p.parse_args(argv)
    out = timing_out(args, "executorch-scan")
    from executorch.extension.pybindings import portable_lib

    portable_lib._unsafe_reset_threadpool(args.threads)
    started = time.perf_counter()
    results = [measure(hidden, steps, args) for hidden in args.hidden for steps in args.steps]
    costs = [op_costs(hidden, args) for hidden in args.hidden]
    print_table(["H", "K", "us/step fully-connected", "us/step batched matmul", "ratio", "portable ops (fc / bmm)"],
                [(r["hidden"], r["steps"], r["us_per_step"]["fully_connected"], r["us_per_step"]["batched_matmul"],
                  r["ratio_fully_connected_over_batched_matmul"],
                  f"{r['portable_ops']['fully_connected']} / {r['portable_ops']['batched_matmul']}") for r in results],
                f"one BiGRU chunk method, XNNPACK, batch 1, {args.threads} thread(s), p50 of interleaved rounds")
    print_table(["H", "op (a link of the chain)", "XNNPACK ops per link", "us per link"],
                [(c["hidden"], k, o["ops_per_link"], o["us_per_link"]) for c in costs for k, o in c["ops"].items()],
                "what one op costs in a delegated method: 64 links in a row on a step's shapes [2, 1, 3H]")
    settings = {k: getattr(args, k) for k in ("hidden", "steps", "threads", "rounds", "iterations", "quick")}
    write_report(out, "executorch-scan", started, fingerprint(), settings, {"chunks": results, "op_costs": costs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
