"""One layer at a time, ExecuTorch's XNNPACK against LiteRT's XNNPACK, fp32: where bench_executorch.py's model gap
comes from.

Each layer (a Linear, Conv1d of kernel 1, 8 and 16, and cbhg's 2048 -> 128 projection) is exported once per
runtime at a static T, then timed in interleaved rounds, batch 1, 1 thread. Both runtimes delegate the layer whole to
XNNPACK (the .pte's single method is one delegate call), so the ratio is the runtimes' own kernels on this CPU, a
floor under any model's ratio that an export cannot lower.

    python bench/bench_executorch_kernels.py            # T=200, 10 rounds of 20
    python bench/bench_executorch_kernels.py --quick    # smoke test: few rounds, nothing written unless --out
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import add_timing_arguments, interleaved_p50, print_table, timing_out, write_report

from edgeseq.environment import fingerprint

# name -> (in channels, out channels, kernel); kernel 0 is a Linear over [1, T, C]
LAYERS = {"linear 128->128": (128, 128, 0), "conv k=1 128->128": (128, 128, 1), "conv k=8 128->128": (128, 128, 8),
          "conv k=16 128->128": (128, 128, 16), "conv k=3 2048->128": (2048, 128, 3)}


def _layer(c_in: int, c_out: int, k: int):
    import torch

    torch.manual_seed(0)
    if k == 0:
        return torch.nn.Linear(c_in, c_out).eval(), torch.randn(1, 200, c_in)
    return torch.nn.Conv1d(c_in, c_out, k, padding=k // 2).eval(), torch.randn(1, c_in, 200)


class _Executorch:
    """The layer as a one-method .pte (XNNPACK partitioner), run through executorch.runtime."""

    def __init__(self, module, example, threads: int):
        import torch
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower
        from executorch.runtime import Runtime

        from edgeseq.formats.executorch.runner import set_threads

        edge = to_edge_transform_and_lower(torch.export.export(module, (example,)), partitioner=[XnnpackPartitioner()])
        set_threads(threads)
        self.program = Runtime.get().load_program(bytes(edge.to_executorch().buffer))  # the method's memory
        self.method = self.program.load_method("forward")

    def infer(self, feed):
        return self.method.execute([feed["x"]])[0].numpy()


class _Litert:
    """The layer through litert-torch, run by ai-edge-litert's interpreter (XNNPACK delegate by default)."""

    def __init__(self, module, example, threads: int, workdir: Path):
        import litert_torch
        from ai_edge_litert.interpreter import Interpreter

        path = workdir / "layer.tflite"
        litert_torch.convert(module, (example,)).export(str(path))
        self.interpreter = Interpreter(str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]

    def infer(self, feed):
        self.interpreter.set_tensor(self.input, feed["x"].numpy())
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output)


def measure(name: str, args, workdir: Path) -> dict:
    c_in, c_out, k = LAYERS[name]
    module, example = _layer(c_in, c_out, k)
    et, lite = _Executorch(module, example, args.threads), _Litert(module, example, args.threads, workdir)
    feed = {"x": example}
    want = module(example).detach().numpy()
    gap = max(float(np.abs(r.infer(feed) - want).max()) for r in (et, lite))
    p50_et, p50_lite, load = interleaved_p50(et, lite, feed, args.rounds, args.iterations)
    flops = 2 * c_out * c_in * max(k, 1) * example.shape[-1 if k else 1]
    return {"layer": name, "time": 200, "threads": args.threads, "max_abs_vs_torch": gap,
            "p50_ms_executorch": round(p50_et, 4), "p50_ms_litert": round(p50_lite, 4),
            "ratio_executorch_over_litert": round(p50_et / p50_lite, 3),
            "gflops_executorch": round(flops / p50_et / 1e6, 1), "gflops_litert": round(flops / p50_lite / 1e6, 1),
            "foreign_load": None if load is None else round(load, 3)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", nargs="+", default=list(LAYERS), choices=list(LAYERS), metavar="LAYER")
    add_timing_arguments(p, rounds=10, iterations=20)
    args = p.parse_args(argv)
    out = timing_out(args, "executorch-kernels")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-et-kernels-") as tmp:
        results = [measure(name, args, Path(tmp)) for name in args.layers]
    print_table(["layer", "p50 et ms", "p50 litert ms", "et/litert", "GFLOP/s et", "GFLOP/s litert"],
                [(r["layer"], r["p50_ms_executorch"], r["p50_ms_litert"], r["ratio_executorch_over_litert"],
                  r["gflops_executorch"], r["gflops_litert"]) for r in results],
                f"one layer, XNNPACK in ExecuTorch vs in LiteRT, fp32: T=200, batch 1, {args.threads} thread(s)")
    settings = {k: getattr(args, k) for k in ("layers", "threads", "rounds", "iterations", "quick")}
    write_report(out, "executorch-kernels", started, fingerprint(), settings, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
