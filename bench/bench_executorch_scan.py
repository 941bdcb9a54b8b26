"""The .pte's recurrence method, one K-step chunk of a BiGRU, in two formulations timed interleaved: what the
exporter writes (split.ScanChunk: one fully-connected op per direction and step, the gates of both directions
together) against the batched matmul per gate it replaced.

Why it matters: at batch 1 a GRU step is a handful of tiny ops, and XNNPACK's batch-matrix-multiply treats its
weight as a second dynamic input, where a fully-connected op packs its weights once at load.

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
    print_table(["H", "K", "us/step fully-connected", "us/step batched matmul", "ratio", "portable ops (fc / bmm)"],
                [(r["hidden"], r["steps"], r["us_per_step"]["fully_connected"], r["us_per_step"]["batched_matmul"],
                  r["ratio_fully_connected_over_batched_matmul"],
                  f"{r['portable_ops']['fully_connected']} / {r['portable_ops']['batched_matmul']}") for r in results],
                f"one BiGRU chunk method, XNNPACK, batch 1, {args.threads} thread(s), p50 of interleaved rounds")
    settings = {k: getattr(args, k) for k in ("hidden", "steps", "threads", "rounds", "iterations", "quick")}
    write_report(out, "executorch-scan", started, fingerprint(), settings, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
