"""Does a long-lived runner leak? 10,000 infer calls on one runner, RSS sampled as it goes (an app's steady state).

    python bench/bench_memory.py [--model cbhg-lite] [--calls 10000] [--time 50]
                                  # -> bench/results/memory-<machine>-<cpu features>.json
"""

from __future__ import annotations

import argparse
import tempfile
import time

# _common first: it puts this checkout's edgeseq ahead of an installed one
from _common import git_state, results_path, utc_now, write_json

import edgeseq
from edgeseq.environment import fingerprint
from edgeseq.formats.torch import TorchRunner


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cbhg-lite")
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--time", type=int, default=50)
    parser.add_argument("--out", default=None,
                        help="JSON path (default bench/results/memory-<machine>-<cpu features>.json)")
    args = parser.parse_args()
    spec = edgeseq.get_model(args.model)
    artifact = edgeseq.export(spec, "onnx", out_dir=tempfile.mkdtemp())
    feeds = [spec.example_inputs(batch=1, time=args.time, seed=i) for i in range(8)]
    rows = []
    for label, runner in (("onnxruntime-cpu", edgeseq.load(artifact.path, threads=1)),
                          ("torch-cpu", TorchRunner(spec, threads=1))):
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
    write_json(args.out or results_path("memory"), {"model": args.model, "time": args.time, "rows": rows,
                                                     "created": utc_now(), "environment": fingerprint(),
                                                     "git": git_state()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
