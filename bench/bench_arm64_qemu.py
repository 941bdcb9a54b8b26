"""Parity on ARM64 kernels, measured on the QEMU target (tools/arm64-target) next to this host's x86 kernels.

Every ONNX and TFLite precision of cbhg-lite and cbhg, checked against the PyTorch original at T = 1, 200, 1000
(batch 1, real speech and random inputs) on the ARM64 target and on this machine's CPU: worst rel L2 and max abs on
each, the tolerance, the int8 kernel family each side ran, and how long the ARM64 check took (emulated, so only a
cost of the test suite, not a latency).

    sudo tools/arm64-target up                      # first (add --cpu cortex-a53 for a Pi 3's core)
    python bench/bench_arm64_qemu.py                # -> bench/results/arm64-qemu-parity-<machine>-<cpu features>.json
    python bench/bench_arm64_qemu.py --models cbhg-lite --out /tmp/lite.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# _common first: it puts this checkout's edgeseq ahead of an installed one
from _common import ROOT, git_commit, results_path, utc_now, write_json

import edgeseq
from edgeseq.environment import fingerprint

PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8-static")
TIMES = (1, 200, 1000)
DEVICES = {"onnx": "arm64-qemu", "tflite": "arm64-qemu-litert"}


def _worst(result) -> dict:
    w = result.worst
    return {"rel_l2": w.rel_l2, "max_abs": w.max_abs, "cosine": w.cosine, "tolerance": w.tolerance.to_dict()} \
        if w else {}


def row(model: str, fmt: str, precision: str, art) -> dict:
    started = time.monotonic()
    arm = edgeseq.check(art.path, device=DEVICES[fmt], times=TIMES, batches=(1,))
    arm_s = time.monotonic() - started
    host = edgeseq.check(art.path, times=TIMES, batches=(1,))
    return {"model": model, "format": fmt, "precision": precision, "artifact": Path(art.path).name,
            "size_bytes": art.size_bytes,
            "arm64": {"passed": arm.passed, **_worst(arm), "runtime": arm.runtime, "cpu": arm.cpu,
                      "check_s": round(arm_s, 1)},
            "host": {"passed": host.passed, **_worst(host), "runtime": host.runtime, "cpu": host.cpu}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["cbhg-lite", "cbhg"])
    parser.add_argument("--formats", nargs="+", default=["onnx", "tflite"])
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default bench/results/arm64-qemu-parity-<machine>-<cpu features>.json: this "
                             "host's; the target's CPU is inside)")
    args = parser.parse_args()
    status = json.loads(subprocess.run([sys.executable, str(ROOT / "tools" / "arm64-target"), "status", "--json"],
                                       capture_output=True, text=True, check=True).stdout)
    if not status["up"]:
        print("error: the ARM64 target is not up: sudo tools/arm64-target up", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            for fmt in args.formats:
                fp32 = None
                for precision in PRECISIONS:
                    t0 = time.monotonic()
                    parent = fp32 if fmt == "onnx" and precision != "fp32" else None
                    art = edgeseq.export(model, fmt, out_dir=tmp, precision=precision, parent=parent)
                    fp32 = art if precision == "fp32" else fp32
                    export_s = time.monotonic() - t0
                    r = dict(row(model, fmt, precision, art), export_s=round(export_s, 1))
                    rows.append(r)
                    print(f"{model} {fmt} {precision}: arm64 rel L2 {r['arm64'].get('rel_l2', float('nan')):.2e} "
                          f"({'PASS' if r['arm64']['passed'] else 'FAIL'}, {r['arm64']['cpu'].get('int8_isa')}, "
                          f"{r['arm64']['check_s']} s), host {r['host'].get('rel_l2', float('nan')):.2e} "
                          f"({'PASS' if r['host']['passed'] else 'FAIL'}, {r['host']['cpu'].get('int8_isa')})",
                          flush=True)
    out = {"what": "worst rel L2 vs the PyTorch original at T=1,200,1000 batch 1 (speech + random), on the ARM64 "
                   "QEMU target and on this host",
           "date": utc_now(), "commit": git_commit(),
           "target": {k: status.get(k) for k in ("cpu", "versions")}, "environment": fingerprint(), "rows": rows}
    write_json(args.out or results_path("arm64-qemu-parity"), out)
    return 0 if all(r["arm64"]["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
