"""The verdict of one bench/gpu_session.sh run, printed last so the device tool's output tail always holds it:
the GPU, the BiGRU kernels per step, fused cbhg at batch 1, T=200 (every variant, with parity) against the 0.4 ms
target, and gpu_check's best rows. Reads the JSON the session's steps wrote; a missing or broken file is
one line saying so, not a traceback.

    python bench/gpu_summary.py OUT_DIR [--target-ms 0.4]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        print(f"(no {path.name}: {exc.__class__.__name__})")
        return None


def summarize(out: Path, target_ms: float) -> list[str]:
    lines: list[str] = []
    probe = _load(out / "triton-gru-quick.json")
    if probe:
        env = probe.get("environment", {})
        lines.append(f"GPU: {env.get('gpu', '?')}; torch {env.get('torch', '?')}")
        for r in probe.get("rows", []):
            if r.get("config") == "cudnn" or r.get("batch") != 1:
                continue
            state = r["error"] or ("PASS" if r["passed"] else "FAIL")
            per_step = f"{r['us_per_step']:.2f} us/step" if r.get("us_per_step") else "-"
            lines.append(f"  BiGRU H={r['hidden']} {r['precision']} {r['config']}: {state}, {per_step}")
        best = None
        for r in probe.get("cbhg", []):
            if r.get("model") != "cbhg":
                continue
            state = r["error"] or ("PASS" if r["passed"] else "FAIL")
            ms = f"{r['device_p50_ms']:.4f} ms" if r.get("device_p50_ms") else "-"
            lines.append(f"  cbhg b1 T200 {r['precision']} {r['variant']}: {ms}, {state}")
            if r.get("passed") and r.get("device_p50_ms") and (best is None or r["device_p50_ms"] < best["device_p50_ms"]):
                best = r
        if best:
            verdict = "MET" if best["device_p50_ms"] <= target_ms else "NOT MET"
            lines.append(f"#5 target cbhg b1 T200 <= {target_ms} ms: {verdict} by {best['variant']} {best['precision']} "
                         f"{best['device_p50_ms']:.4f} ms (rel L2 {best['rel_l2']:.1e})")
        else:
            lines.append(f"#5 target cbhg b1 T200 <= {target_ms} ms: no passing cbhg row")
    check = _load(out / "gpu-check.json")
    if check:
        best_rows: dict = {}
        for r in check.get("rows", []):
            key = (r.get("model"), r.get("batch"), r.get("time"))
            if r.get("passed") and r.get("device_p50_ms") and (
                    key not in best_rows or r["device_p50_ms"] < best_rows[key]["device_p50_ms"]):
                best_rows[key] = r
        for (model, b, t), r in sorted(best_rows.items(), key=lambda kv: tuple(map(str, kv[0]))):
            lines.append(f"  gpu_check best {model} {b}x{t}: {r.get('runtime')} {r.get('precision')} "
                         f"{r['device_p50_ms']:.3f} ms")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--target-ms", type=float, default=0.4)
    args = parser.parse_args()
    print("\n".join(summarize(args.out, args.target_ms)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
