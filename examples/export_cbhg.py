"""Export CBHG to ONNX, check it against the PyTorch original over several sequence lengths, and time it.

    python examples/export_cbhg.py [--model cbhg] [--out edgeseq-out/example]
"""

import argparse

import edgeseq


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="cbhg")
    parser.add_argument("--out", default="edgeseq-out/example")
    parser.add_argument("--times", default="1,7,50,200")
    args = parser.parse_args()

    artifact = edgeseq.export(args.model, "onnx", out_dir=args.out)
    print(f"exported {artifact.path} ({artifact.size_bytes / 1e6:.1f} MB, sha256 {artifact.sha256[:12]})")

    times = [int(t) for t in args.times.split(",")]
    parity = edgeseq.check(artifact.path, args.model, times=times, batches=[1, 3])
    worst = parity.worst
    print(f"parity {'PASS' if parity.passed else 'FAIL'}: {len(parity.cases)} cases, worst rel L2 {worst.rel_l2:.2e}")

    latency = edgeseq.profile(artifact.path, time=200, iterations=20)
    print(f"{latency.runtime}: p50 {latency.p50_ms:.2f} ms at T=200, real-time factor {latency.rtf:.4f}")
    return 0 if parity.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
