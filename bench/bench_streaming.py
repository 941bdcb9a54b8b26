"""Streaming cbhg-lite-stream: chunked (state carried) vs one full-sequence call, per runtime, from the same artifact.

For each format (ONNX Runtime .onnx, ORT Mobile .ort, LiteRT .tflite), fp32, batch 1, 1 thread, T frames of real
speech: edgeseq.check_stream at chunk sizes 1, 8, 32 (and any --chunks): the worst rel L2 of the streamed outputs and
final state against PyTorch's full call, the first call's time, the median later call, and that call over its
frames' share of one full call on the same runtime (the #19 target: <= 1.5x at 32 frames).

    python bench/bench_streaming.py               # onnx, ort, tflite; T=256; 5 replays per chunk size
    python bench/bench_streaming.py --quick       # onnx only, 1 replay; nothing written unless --out
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _common import print_table, results_path, write_report

import edgeseq
from edgeseq.environment import fingerprint
from edgeseq.formats.torch import reference
from edgeseq.parity import DEFAULT_TOLERANCES
from edgeseq.streaming import check_stream

MODEL = "cbhg-lite-stream"


def measure(fmt: str, args, workdir: Path) -> list[dict]:
    t0 = time.perf_counter()
    art = edgeseq.export(MODEL, fmt, out_dir=workdir)
    export_s = time.perf_counter() - t0
    spec = edgeseq.get_model(MODEL)
    ref = reference(spec, None)
    ref.load()
    with edgeseq.load(art.path, threads=args.threads) as runner:
        result = check_stream(runner, ref, spec, precision="fp32", tolerances=DEFAULT_TOLERANCES, chunks=args.chunks,
                              time=args.time, repeats=args.repeats, artifact=art.path)
    return [{"format": fmt, "runtime": result.runtime, "chunk": c.chunk, "time": c.time, "calls": c.calls,
             "passed": c.passed, "worst_rel_l2": max(o.rel_l2 for o in c.outputs),
             "first_chunk_ms": round(c.first_chunk_ms, 4), "chunk_ms": round(c.chunk_ms, 4),
             "full_ms": round(c.full_ms, 4), "share_ratio": round(c.share_ratio, 3),
             "export_seconds": round(export_s, 1)} for c in result.cases]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--formats", nargs="+", default=["onnx", "ort", "tflite"])
    p.add_argument("--chunks", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--time", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5, help="replays of each stream for its timings (default 5)")
    p.add_argument("--quick", action="store_true", help="onnx only, 1 replay; nothing written unless --out")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.formats, args.repeats = ["onnx"], 1
    out = args.out if args.out is not None else (None if args.quick else results_path("streaming"))
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-streaming-") as tmp:
        for fmt in args.formats:
            results += measure(fmt, args, Path(tmp) / fmt)
    print_table(["format", "chunk", "calls", "parity", "worst rel L2", "first ms", "chunk ms", "full ms",
                 "chunk / share of full"],
                [(r["format"], r["chunk"], r["calls"], "PASS" if r["passed"] else "FAIL", f"{r['worst_rel_l2']:.1e}",
                  r["first_chunk_ms"], r["chunk_ms"], r["full_ms"], f"{r['share_ratio']:.2f}x") for r in results],
                f"{MODEL} streamed vs one call: batch 1, T={args.time}, {args.threads} thread(s), fp32")
    settings = {k: getattr(args, k) for k in ("formats", "chunks", "time", "threads", "repeats", "quick")}
    write_report(out, "streaming", started, fingerprint(), settings, results)
    return 0 if all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
