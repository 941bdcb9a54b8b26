"""ONNX Runtime Mobile's .ort against the .onnx it was converted from: same outputs, p50 and load time.

For each model x precision (batch 1, T frames, 1 thread by default):
  1. the .onnx and the .ort of that precision (int8 derived from the fp32 .onnx / .ort, as the matrix does);
  2. their outputs at T on real speech: the largest absolute difference (the tests assert 0);
  3. p50 of each runner, timed in interleaved rounds (_common.interleaved_p50), and the ratio ort / onnx;
  4. load time: median of `--loads` fresh sessions (constructor + load()) of each file.

    python bench/bench_ort.py                 # cbhg-lite + cbhg, fp32 + int8-static, T=200, 1 thread
    python bench/bench_ort.py --quick         # smoke test: few rounds, nothing written unless --out
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import interleaved_p50, print_table, results_path, write_report

import numpy as np

import edgeseq
from edgeseq.environment import fingerprint
from edgeseq.formats import runner_for


def load_ms(path: str, threads: int, loads: int) -> float:
    times = []
    for _ in range(loads):
        t0 = time.perf_counter()
        runner_for(path, threads=threads).load().close()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def measure(model: str, precisions: list[str], args, workdir: Path) -> list[dict]:
    spec = edgeseq.get_model(model)
    feed = spec.example_inputs(batch=1, time=args.time, source="speech", seed=11)
    made = {}
    for fmt in ("onnx", "ort"):
        fp32 = edgeseq.export(model, fmt, out_dir=workdir)
        made[fmt, "fp32"] = fp32
        for precision in precisions:
            if precision != "fp32":
                made[fmt, precision] = edgeseq.export(model, fmt, precision=precision, out_dir=workdir, parent=fp32)
    rows = []
    for precision in precisions:
        onnx_path, ort_path = made["onnx", precision].path, made["ort", precision].path
        with runner_for(onnx_path, threads=args.threads) as a, runner_for(ort_path, threads=args.threads) as b:
            diff = max(float(np.max(np.abs(a.infer(feed)[k] - b.infer(feed)[k]))) for k in spec.output_names)
            p50_onnx, p50_ort, load = interleaved_p50(a, b, feed, args.rounds, args.iterations)
        rows.append({"model": model, "precision": precision, "time": args.time, "batch": 1, "threads": args.threads,
                     "max_abs_diff": diff, "p50_ms_onnx": round(p50_onnx, 4), "p50_ms_ort": round(p50_ort, 4),
                     "ratio_ort_over_onnx": round(p50_ort / p50_onnx, 4),
                     "load_ms_onnx": round(load_ms(onnx_path, args.threads, args.loads), 2),
                     "load_ms_ort": round(load_ms(ort_path, args.threads, args.loads), 2),
                     "size_bytes_onnx": made["onnx", precision].size_bytes,
                     "size_bytes_ort": made["ort", precision].size_bytes,
                     "foreign_load": None if load is None else round(load, 3)})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["cbhg-lite", "cbhg"])
    p.add_argument("--precisions", nargs="+", default=["fp32", "int8-static"])
    p.add_argument("--time", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=20, help="interleaved rounds (default 20)")
    p.add_argument("--iterations", type=int, default=20, help="timed runs per runner per round (default 20)")
    p.add_argument("--loads", type=int, default=10, help="fresh sessions timed per file (default 10)")
    p.add_argument("--quick", action="store_true", help="3 rounds of 5, 3 loads; nothing written unless --out")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.iterations, args.loads = 3, 5, 3
    out = args.out if args.out is not None else (None if args.quick else results_path("ort-vs-onnx"))
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-ort-") as tmp:
        for model in args.models:
            results += measure(model, args.precisions, args, Path(tmp) / model)
    print_table(["model", "precision", "max |diff|", "p50 onnx ms", "p50 ort ms", "ort/onnx", "load onnx ms",
                 "load ort ms"],
                [(r["model"], r["precision"], f"{r['max_abs_diff']:.1e}", r["p50_ms_onnx"], r["p50_ms_ort"],
                  r["ratio_ort_over_onnx"], r["load_ms_onnx"], r["load_ms_ort"]) for r in results],
                f"ORT format vs ONNX: batch 1, T={args.time}, {args.threads} thread(s)")
    settings = {k: getattr(args, k) for k in ("models", "precisions", "time", "threads", "rounds", "iterations",
                                              "loads", "quick")}
    write_report(out, "ort-vs-onnx", started, fingerprint(), settings, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
