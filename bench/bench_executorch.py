"""ExecuTorch's .pte against LiteRT's .tflite at each precision: p50 from one artifact per format at several T,
error, size and export time.

For each model and precision (batch 1, real speech, 1 thread by default):
  1. one .pte (max_time = the longest T asked) and one .tflite at that precision, each export timed;
  2. at each T: both runners' relative L2 error against the PyTorch original, then their p50 timed in interleaved
     rounds (_common.interleaved_p50) and the ratio executorch / litert (issue #18's target: <= 1.3);
  3. the .pte's plan: its recurrence chunk K (and tail chunk), how many steps it chains, and how it writes CBHG's
     plain convolutions (--convs: XNNPACK's convolution or im2col GEMMs; options.CONV_FORMS says which CPUs want
     which).

    python bench/bench_executorch.py            # cbhg-lite + cbhg, fp32 / fp16 / int8-dynamic / int8-static, T=200, 1000
    python bench/bench_executorch.py --quick    # smoke test: few rounds, nothing written unless --out
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import add_timing_arguments, interleaved_p50, print_table, timing_out, write_report

import edgeseq
from edgeseq.enums import Precision
from edgeseq.environment import fingerprint
from edgeseq.formats import read_metadata, runner_for
from edgeseq.formats.executorch import ExecutorchOptions
from edgeseq.formats.executorch.convert import export as export_pte


def rel_l2(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))


def measure(model: str, precision: str, args, workdir: Path) -> list[dict]:
    import torch

    spec = edgeseq.get_model(model)
    made, seconds = {}, {}
    options = ExecutorchOptions(max_time=max(args.times), convs=args.convs)
    convs = options.conv_form(Precision(precision))
    for fmt in ("executorch", "tflite"):
        t0 = time.perf_counter()
        if fmt == "executorch":  # the format's own export: the options carry the conv form
            workdir.mkdir(parents=True, exist_ok=True)
            made[fmt] = export_pte(spec, workdir / f"{model}.{precision}.pte", precision=Precision(precision),
                                   options=options)
        else:
            made[fmt] = edgeseq.export(model, fmt, out_dir=workdir, precision=precision, max_time=max(args.times))
        seconds[fmt] = time.perf_counter() - t0
    plan = json.loads(read_metadata(made["executorch"].path)["edgeseq.plan"])
    chunk = [s["steps"] for s in plan["steps"] if s["kind"] == "scan"]
    tail = [s.get("tail_steps") for s in plan["steps"] if s["kind"] == "scan"]
    module = spec.build()
    rows = []
    with runner_for(made["executorch"].path, threads=args.threads) as et, \
            runner_for(made["tflite"].path, threads=args.threads) as lite:
        for t in args.times:
            feed = spec.example_inputs(batch=1, time=t, source="speech", seed=11)
            with torch.no_grad():
                want = module(*[torch.from_numpy(feed[n]) for n in spec.input_names])
            want = (want[0] if isinstance(want, tuple) else want).numpy()
            out = spec.output_names[0]
            errors = {"executorch": rel_l2(et.infer(feed)[out], want), "litert": rel_l2(lite.infer(feed)[out], want)}
            p50_et, p50_lite, load = interleaved_p50(et, lite, feed, args.rounds, args.iterations)
            rows.append({"model": model, "precision": precision, "time": t, "batch": 1, "threads": args.threads,
                         "rel_l2_executorch": errors["executorch"], "rel_l2_litert": errors["litert"],
                         "p50_ms_executorch": round(p50_et, 4), "p50_ms_litert": round(p50_lite, 4),
                         "ratio_executorch_over_litert": round(p50_et / p50_lite, 4),
                         "export_s_executorch": round(seconds["executorch"], 1),
                         "export_s_litert": round(seconds["tflite"], 1),
                         "max_time": max(args.times), "convs": convs, "chunk": chunk, "tail": tail,
                         "methods": len(plan["steps"]),
                         "size_bytes_executorch": made["executorch"].size_bytes,
                         "size_bytes_litert": made["tflite"].size_bytes,
                         "foreign_load": None if load is None else round(load, 3)})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["cbhg-lite", "cbhg"])
    p.add_argument("--times", nargs="+", type=int, default=[200, 1000])
    p.add_argument("--precisions", nargs="+", default=["fp32", "fp16", "int8-dynamic", "int8-static"])
    p.add_argument("--convs", choices=["direct", "im2col"], default=None,
                   help="how the .pte writes CBHG's plain convolutions (default: the exporter's, per precision)")
    add_timing_arguments(p, rounds=10, iterations=10)
    args = p.parse_args(argv)
    out = timing_out(args, "executorch-vs-litert")
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-et-") as tmp:
        for model in args.models:
            for precision in args.precisions:
                results += measure(model, precision, args, Path(tmp) / model / precision)
    print_table(["model", "precision", "convs", "T", "rel L2 et", "rel L2 litert", "p50 et ms", "p50 litert ms",
                 "et/litert", "export et s", "export litert s", "size et / litert"],
                [(r["model"], r["precision"], r["convs"], r["time"], f"{r['rel_l2_executorch']:.1e}",
                  f"{r['rel_l2_litert']:.1e}",
                  r["p50_ms_executorch"], r["p50_ms_litert"], r["ratio_executorch_over_litert"],
                  r["export_s_executorch"], r["export_s_litert"],
                  f"{r['size_bytes_executorch'] / r['size_bytes_litert']:.2f}") for r in results],
                f"ExecuTorch (.pte) vs LiteRT (.tflite), each precision: batch 1, {args.threads} thread(s), one artifact each")
    settings = {k: getattr(args, k) for k in ("models", "precisions", "times", "convs", "threads", "rounds", "iterations",
                                              "quick")}
    write_report(out, "executorch-vs-litert", started, fingerprint(), settings, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
