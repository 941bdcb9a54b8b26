"""A longer fuzzing run of every file loader (the tests run a bounded one). New failures are saved to the corpus.

    python bench/fuzz_loaders.py [--examples 5000] [--targets onnx checkpoint ...]
                                  # -> bench/results/fuzz-<machine>-<cpu features>.json
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

# _common first: it puts this checkout's edgeseq ahead of an installed one
from _common import ROOT, results_path, tests_module, write_json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

fuzz_targets = tests_module("fuzz_targets")  # the targets and seeds the tests fuzz too
SEEDS, TARGETS, run_target = fuzz_targets.SEEDS, fuzz_targets.TARGETS, fuzz_targets.run_target
CORPUS = ROOT / "tests" / "fuzz_corpus"


def mutations(seed: bytes):
    """Truncations, byte flips and splices of a valid input."""
    return st.one_of(
        st.integers(0, len(seed)).map(lambda n: seed[:n]),
        st.lists(st.tuples(st.integers(0, max(0, len(seed) - 1)), st.integers(0, 255)), min_size=1, max_size=16).map(
            lambda flips: bytes(dict(flips).get(i, b) for i, b in enumerate(seed))),
        st.binary(max_size=64).map(lambda junk: seed[: len(seed) // 2] + junk),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=3000)
    parser.add_argument("--targets", nargs="+", default=sorted(TARGETS))
    parser.add_argument("--out", default=None,
                        help="JSON path (default bench/results/fuzz-<machine>-<cpu features>.json)")
    args = parser.parse_args()
    results = {}
    seeds_by_target = dict(SEEDS)
    if "onnx" in args.targets:  # a real model to mutate: garbage alone stops at the first-byte check
        import tempfile

        import edgeseq

        art = edgeseq.export("seq-cnn", "onnx", out_dir=tempfile.mkdtemp())
        seeds_by_target["onnx"] = [Path(art.path).read_bytes()]
    if "tflite" in args.targets:
        import tempfile

        import edgeseq

        art = edgeseq.export("cbhg-lite", "tflite", out_dir=tempfile.mkdtemp())
        seeds_by_target["tflite"] = [Path(art.path).read_bytes()]
    for name in args.targets:
        seeds = seeds_by_target.get(name, [b""])
        strategy = st.one_of(st.binary(max_size=2048), *(mutations(s) for s in seeds))
        failures: list[str] = []
        started = time.time()

        @settings(max_examples=args.examples, deadline=2000, database=None, suppress_health_check=list(HealthCheck))
        @given(data=strategy)
        def run(data):
            try:
                run_target(name, data)
            except AssertionError as exc:
                digest = hashlib.sha256(data).hexdigest()[:16]
                (CORPUS / name).mkdir(parents=True, exist_ok=True)
                (CORPUS / name / f"found-{digest}").write_bytes(data)  # keep the small or typical ones; trim before committing
                failures.append(str(exc))
                raise

        try:
            run()
            status = "0 crashes"
        except Exception as exc:  # noqa: BLE001 - report and go on with the next target
            status = f"crash: {str(exc).splitlines()[0][:200]}"
        results[name] = {"examples": args.examples, "seconds": round(time.time() - started, 1), "status": status}
        print(f"{name:14s} {args.examples} examples in {results[name]['seconds']:6.1f} s: {status}", flush=True)
    write_json(args.out or results_path("fuzz"), results)
    return 0 if all(r["status"] == "0 crashes" for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
