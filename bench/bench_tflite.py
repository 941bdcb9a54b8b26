"""LiteRT (fp32 / fp16 / dynamic int8 / static int8) vs PyTorch eager, with ONNX Runtime fp32, in one run.

For each model (cbhg, cbhg-lite): export ONNX fp32 and the four TFLite precisions (conversion time, size), check
each against the PyTorch original (worst relative L2 over T in {7, 200, 1000}, batch 1, real speech), then time
every runtime back to back at batch 1, T=200 for each thread count. Ratios are same-run ratios.

LiteRT runs through its Python Interpreter with the XNNPACK delegate: the engine Android and iOS apps embed; on
this machine it runs XNNPACK's x86 kernels, so the numbers rank runtimes here, not on a phone.

    python bench/bench_tflite.py                     # cbhg + cbhg-lite, 1 and 2 threads, T=200
                                                     # -> bench/results/tflite-runtimes-<machine>-<cpu features>.json
    python bench/bench_tflite.py --quick             # smoke test, writes JSON only with --out
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# _common first: it puts this checkout's edgeseq ahead of an installed one
from _common import ForeignLoad, print_table, results_path, write_report

import edgeseq
from edgeseq.environment import fingerprint
from edgeseq.formats.onnx import OnnxRunner
from edgeseq.formats.tflite import TfliteRunner
from edgeseq.formats.torch import TorchRunner
from edgeseq.latency import measure

PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8-static")
ENGINE_NOTE = ("LiteRT Interpreter (ai-edge-litert) with the XNNPACK delegate, the CPU engine Android and iOS apps "
               "run; here it runs XNNPACK's x86 kernels")


def bench_model(name: str, args, workdir: Path) -> dict:
    spec = edgeseq.get_model(name)
    onnx_art = edgeseq.export(name, "onnx", out_dir=workdir)
    arts = {}
    for prec in PRECISIONS:
        print(f"  {name}: exporting tflite {prec}", file=sys.stderr, flush=True)
        arts[prec] = edgeseq.export(name, "tflite", out_dir=workdir, precision=prec)
    parity = {}
    for prec, art in arts.items():
        res = edgeseq.check(art.path, name, times=args.parity_times, batches=(1,), sources=("speech",))
        parity[prec] = {"passed": res.passed, "worst_rel_l2": res.worst.rel_l2, "worst_max_abs": res.worst.max_abs}
    feed = spec.example_inputs(batch=1, time=args.time)
    rows = []
    for threads in args.threads:
        runners = {"eager": TorchRunner(spec, threads=threads), "onnxruntime-fp32": OnnxRunner(onnx_art.path, threads=threads)}
        runners.update({f"litert-{p}": TfliteRunner(a.path, threads=threads) for p, a in arts.items()})
        lat = {}
        with ForeignLoad() as load:
            for label, runner in runners.items():
                with runner:
                    r = measure(runner, feed, warmup=args.warmup, iterations=args.iterations)
                lat[label] = {"p50_ms": r.p50_ms, "p90_ms": r.p90_ms, "mean_ms": r.mean_ms}
                time.sleep(0.2)
        p50 = {k: v["p50_ms"] for k, v in lat.items()}
        rows.append({
            "threads": threads,
            "latency": lat,
            "litert_fp32_x_onnxruntime_fp32": p50["litert-fp32"] / p50["onnxruntime-fp32"],
            "eager_x_litert_fp32": p50["eager"] / p50["litert-fp32"],
            "litert_int8_static_x_fp32": p50["litert-int8-static"] / p50["litert-fp32"],
            "litert_int8_dynamic_x_fp32": p50["litert-int8-dynamic"] / p50["litert-fp32"],
            "foreign_cpu_share": load.share,
        })
    return {
        "model": name,
        "artifacts": {p: {"size_bytes": a.size_bytes, "export_seconds": a.export_seconds, "notes": list(a.notes)}
                      for p, a in arts.items()},
        "onnx_fp32_size_bytes": onnx_art.size_bytes,
        "parity": parity,
        "rows": rows,
    }


def render(results: list[dict]) -> None:
    print_table(("model", "precision", "size MB", "export s", "worst rel L2 (T 7/200/1000)"),
                [(r["model"], p, f"{a['size_bytes'] / 1e6:.2f}", f"{a['export_seconds']:.1f}",
                  f"{r['parity'][p]['worst_rel_l2']:.2g}") for r in results for p, a in r["artifacts"].items()])
    runtimes = ("eager", "onnxruntime-fp32", "litert-fp32", "litert-fp16", "litert-int8-dynamic", "litert-int8-static")
    rows = []
    for r in results:
        for row in r["rows"]:
            rows.append((r["model"], row["threads"], *(f"{row['latency'][k]['p50_ms']:.2f}" for k in runtimes),
                         f"{row['litert_fp32_x_onnxruntime_fp32']:.2f}x", f"{row['eager_x_litert_fp32']:.2f}x"))
    print_table(("model", "thr", "eager", "ORT fp32", "LiteRT fp32", "fp16", "dyn int8", "static int8", "LiteRT/ORT",
                 "eager/LiteRT"), rows, title="p50 ms, batch 1")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["cbhg", "cbhg-lite"])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--time", type=int, default=200)
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    args.parity_times = (7, 200, 1000)
    if args.quick:
        args.iterations, args.warmup, args.parity_times = 10, 2, (7, 50)
    out = args.out if args.out is not None else (None if args.quick else results_path("tflite-runtimes"))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeseq-bench-tflite-") as tmp:
        results = [bench_model(name, args, Path(tmp)) for name in args.models]
    render(results)
    write_report(out, "tflite-runtimes", started, {**fingerprint(), "engine": ENGINE_NOTE},
                 {"batch": 1, "time": args.time, "threads": args.threads, "iterations": args.iterations,
                  "warmup": args.warmup, "parity_times": list(args.parity_times), "input_source": "speech"},
                 results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
