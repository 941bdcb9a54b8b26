"""Does a long-lived runner leak? 10,000 infer calls on one runner, RSS sampled as it goes (an app's steady state).

    python bench/bench_memory.py [--model cbhg-lite] [--calls 10000] [--time 50]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import edgeseq  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="cbhg-lite")
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--time", type=int, default=50)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "memory.json"))
    args = parser.parse_args()
    spec = edgeseq.get_model(args.model)
    artifact = edgeseq.export(spec, "onnx", out_dir=tempfile.mkdtemp())
    feeds = [spec.example_inputs(batch=1, time=args.time, seed=i) for i in range(8)]
    rows = []
    for label, runner in (("onnxruntime-cpu", edgeseq.load(artifact.path, threads=1)),
                          ("torch-cpu", __import__("edgeseq.formats.torch", fromlist=["x"]).TorchRunner(spec, threads=1))):
        with runner:
            for f in feeds:  # warm: allocator arenas, kernel caches
                runner.infer(f)
            samples, started = [], time.time()
            for i in range(args.calls):
                runner.infer(feeds[i % len(feeds)])
                if i % (args.calls // 10) == 0:
                    samples.append(round(rss_mb(), 1))
            samples.append(round(rss_mb(), 1))
        growth = samples[-1] - samples[1]  # after the first tenth: allocators have settled
        rows.append({"runtime": label, "calls": args.calls, "rss_mb": samples, "growth_mb_after_first_tenth": growth,
                     "seconds": round(time.time() - started, 1)})
        print(f"{label:16s} {args.calls} calls in {rows[-1]['seconds']} s: RSS {samples[0]} -> {samples[-1]} MB "
              f"(growth after the first tenth: {growth:+.1f} MB)", flush=True)
    Path(args.out).write_text(json.dumps({"model": args.model, "time": args.time, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
