"""int8 on the CPU that runs it: the ONNX int8 candidates measured on this machine's int8 kernel family.

ONNX Runtime picks its integer GEMM / conv kernels by CPU: on x86 without VNNI (AVX2 only) a u8s8 product goes
through `vpmaddubsw`, whose 16-bit intermediate sums saturate; VNNI (`vpdpbusd`), AMX and ARM's dot products do not.
So one int8 file can pass parity where it was built and fail where it runs. This script measures each candidate
default on this CPU, so the defaults can be chosen from runs on every family (one JSON per family):

  per model (cbhg-lite, cbhg) and candidate: file size vs fp32, worst rel L2 / max abs against the PyTorch fp32
  original over real-speech inputs at T in {7, 50, 200, 1000} (batch 1) and random inputs at T in {1, 50} (batch 3),
  p50 at T=200 batch 1 on 1 thread timed interleaved with the fp32 parent (the ratio is the number that counts),
  and whether it passes edgeseq's tolerance for its precision.

    python bench/bench_int8_cpus.py                 # -> bench/results/int8-cpus-<machine>-<int8 isa>.json
    python bench/bench_int8_cpus.py --quick         # cbhg-lite only, fewer rounds; JSON only with --out
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

# _common first: it puts this checkout's edgeseq ahead of an installed one
from _common import errors, feeds_for, git_commit, interleaved_p50, results_path, utc_now, worst, write_json

import edgeseq
from edgeseq.environment import fingerprint
from edgeseq.formats.onnx import OnnxRunner, int8_safe_isas
from edgeseq.formats.torch import TorchRunner
from edgeseq.parity import DEFAULT_TOLERANCES
from edgeseq.formats import get as get_format
from edgeseq.quantize import QuantDtype

ONNX = get_format("onnx")  # the ONNX format: its quantization defaults


def candidates() -> list[tuple[str, object]]:
    """(name, QuantConfig): the int8-static and int8-dynamic choices, each on top of the op selection of the shipped
    default (Conv int8; MatMul / GRU weights stored int8)."""
    static, dynamic = ONNX.default_quant("int8-static"), ONNX.default_quant("int8-dynamic")
    u8, s8 = QuantDtype.UINT8, QuantDtype.INT8
    return [
        ("static u8s8 per-channel", static.replace(weight_type=s8, activation_type=u8, per_channel=True,
                                                   reduce_range=False)),
        ("static u8s8 per-channel reduce-range", static.replace(weight_type=s8, activation_type=u8, per_channel=True,
                                                                reduce_range=True)),
        ("static u8s8 per-tensor", static.replace(weight_type=s8, activation_type=u8, per_channel=False,
                                                  reduce_range=False)),
        ("static s8s8 per-channel", static.replace(weight_type=s8, activation_type=s8, per_channel=True,
                                                   reduce_range=False)),
        ("static u8u8 per-channel", static.replace(weight_type=u8, activation_type=u8, per_channel=True,
                                                   reduce_range=False)),
        ("static u8u8 per-tensor", static.replace(weight_type=u8, activation_type=u8, per_channel=False,
                                                  reduce_range=False)),
        ("dynamic u8u8 per-tensor", dynamic.replace(weight_type=u8, per_channel=False, reduce_range=False)),
        ("dynamic u8s8 per-tensor", dynamic.replace(weight_type=s8, per_channel=False, reduce_range=False)),
        ("dynamic u8s8 per-tensor reduce-range", dynamic.replace(weight_type=s8, per_channel=False,
                                                                 reduce_range=True)),
    ]


def run_model(name: str, args, tmp: Path) -> dict:
    spec = edgeseq.get_model(name)
    fp32 = edgeseq.export(spec, "onnx", out_dir=tmp / name / "fp32")
    feeds = feeds_for(spec)
    with TorchRunner(spec) as ref:
        refs = [ref.infer(f) for *_, f in feeds]
    lat_feed = spec.example_inputs(batch=1, time=args.time, source="speech", seed=13)
    rows = []
    with OnnxRunner(fp32.path, device="cpu", threads=1) as base:
        for k, (label, config) in enumerate(candidates()):
            if args.quick and "dynamic" in label:
                continue
            precision = config.approach.value
            art = edgeseq.export(spec, "onnx", out_dir=tmp / name / str(k), precision=precision, quant=config,
                                 parent=fp32.path)
            with OnnxRunner(art.path, device="cpu", threads=1) as runner:
                errs = errors(runner, feeds, refs)
                base_ms, ms, load = interleaved_p50(base, runner, lat_feed, args.rounds, args.iterations)
            tol = DEFAULT_TOLERANCES.get(precision, spec.output_names[0]).rel_l2
            w = worst(errs)
            rows.append({"candidate": label, "config": config.to_dict(), "label": config.label(),
                         "safe_on": int8_safe_isas(config), "is_default": config == ONNX.default_quant(precision),
                         "size_ratio": art.size_bytes / fp32.size_bytes, "p50_ms": ms, "fp32_p50_ms": base_ms,
                         "latency_ratio": ms / base_ms, "foreign_load": load, "worst": w,
                         "speech": worst(errs, "speech"), "random": worst(errs, "random"), "tolerance": tol,
                         "passes": w["rel_l2"] <= tol})
            r = rows[-1]
            print(f"{name:10s} {label:38s} size {r['size_ratio']:.3f}x  p50 {ms:6.2f} ms ({r['latency_ratio']:.2f}x "
                  f"fp32)  rel L2 {w['rel_l2']:.2e} (tol {tol:.1e}) {'PASS' if r['passes'] else 'FAIL'}"
                  f"{'  [default]' if r['is_default'] else ''}", flush=True)
    return {"fp32_size_bytes": fp32.size_bytes, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["cbhg-lite", "cbhg"])
    ap.add_argument("--time", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.quick:
        args.models, args.rounds, args.iterations = ["cbhg-lite"], 2, 5
    env = fingerprint()
    out = args.out or (None if args.quick else results_path("int8-cpus"))
    print(f"CPU {env['cpu']} ({', '.join(env['cpu_flags'])}): int8 kernel family {env['int8_isa']}", flush=True)
    started = time.perf_counter()
    data = {"schema": "edgeseq.bench.int8-cpus/1",
            "created": utc_now(), "environment": env, "git_commit": git_commit(),
            "settings": {"threads": 1, "latency_time": args.time, "rounds": args.rounds,
                         "iterations": args.iterations},
            "models": {}}
    with tempfile.TemporaryDirectory(prefix="edgeseq-bench-int8-") as tmp:
        for name in args.models:
            data["models"][name] = run_model(name, args, Path(tmp))
    data["seconds"] = round(time.perf_counter() - started, 1)
    if out:
        write_json(out, data)


if __name__ == "__main__":
    main()
