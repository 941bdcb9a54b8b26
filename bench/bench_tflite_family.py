"""TFLite beyond cbhg / cbhg-lite, and where int8 error sits layer by layer, in one run.

1. attention-cbhg and cbhg-postnet exported to TFLite (fp32): conversion time and worst relative L2 against the
   PyTorch original over T in {1, 7, 50, 200} x batch {1, 3};
2. cbhg-lite int8-static exported to TFLite and bisected (`edgeseq.bisect`, T=37): the relative L2 of every module's
   output against PyTorch's, which shows how the int8 front end's error shrinks after the float residual add.

    python bench/bench_tflite_family.py            # -> bench/results/tflite-family-<machine>-<cpu features>.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# _common first: it puts this checkout's edgeseq ahead of an installed one
from _common import print_table, results_path, write_report

import edgeseq
from edgeseq.environment import fingerprint

TIMES, BATCHES = (1, 7, 50, 200), (1, 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default bench/results/tflite-family-<machine>-<cpu features>.json)")
    args = parser.parse_args()
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="edgeseq-bench-family-") as tmp:
        for model in ("attention-cbhg", "cbhg-postnet"):
            t0 = time.perf_counter()
            art = edgeseq.export(model, "tflite", out_dir=tmp)
            seconds = time.perf_counter() - t0
            check = edgeseq.check(art.path, model, times=TIMES, batches=BATCHES)
            results.append({"model": model, "precision": "fp32", "export_seconds": round(seconds, 1),
                            "passed": check.passed, "worst_rel_l2": check.worst.rel_l2})
            print(f"{model} fp32 tflite: export {seconds:.1f} s, parity {'PASS' if check.passed else 'FAIL'}, "
                  f"worst rel L2 {check.worst.rel_l2:.2e}")
        spec = edgeseq.get_model("cbhg-lite")
        art = edgeseq.export(spec, "tflite", out_dir=tmp, precision="int8-static")
        found = edgeseq.bisect(art.path, spec, precision="int8-static", time=37)
        layers = [{"module": x.module, "rel_l2": x.rel_l2, "passed": x.passed} for x in found.layers]
        results.append({"model": "cbhg-lite", "precision": "int8-static", "bisect": layers})
        print_table(("module", "rel L2"), [(x["module"], f"{x['rel_l2']:.2e}") for x in layers],
                    title="cbhg-lite int8-static tflite, rel L2 per module (bisect, T=37)")
    write_report(args.out or results_path("tflite-family"), "tflite-family", started, fingerprint(),
                 {"times": list(TIMES), "batches": list(BATCHES), "bisect_time": 37}, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
