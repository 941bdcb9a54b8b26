"""Quantization sweep for ONNX Runtime CPU: which QuantConfig settings hold up on the CBHG models, measured.

For each model (cbhg, cbhg-lite):
  1. the fp32 ONNX export (the parent of every variant) and the PyTorch fp32 original (the reference);
  2. every variant in the sweep (`sweep_configs`): fp16; int8-dynamic over weight type x per-channel x op types;
     int8-static over QDQ/QOperator x weight type x per-channel x calibration method, then the op-type subsets,
     weight-only int8 storage and the hoisted GRU input projection; each exported through edgeseq's own
     `export(..., precision, quant=QuantConfig, parent=fp32)` (the same code path as `edgeseq export`);
  3. per variant: file size vs fp32; error against the PyTorch fp32 original (max abs, rel L2, cosine, SNR) on
     real-speech inputs at T in {7, 50, 200, 1000} (batch 1) and random inputs at T in {1, 50} (batch 3);
     latency p50 at T=200, batch 1, 1 thread, measured *interleaved* with the fp32 parent (rounds of
     fp32 / variant, median of each) so that load from other processes hits both alike; the ratio is what counts;
     the op census (which op types compute in int8 / still in float);
  4. PyTorch's own int8 (torch.ao dynamic quantization of Linear + GRU) on the same inputs, for comparison;
  5. the chosen defaults (edgeseq.formats.get('onnx').default_quant) again at T in {7, 50, 200, 1000} for latency too:
     the "targets" table (size <= 0.30x, latency <= 0.7x fp32 on the same runtime, rel L2 <= 1e-2 on speech).

    python bench/bench_quant.py                        # full sweep, both models (~10 min on 2 busy cores)
                                                       # -> bench/results/quant-sweep-<machine>-<cpu features>.json
    python bench/bench_quant.py --quick                # a handful of variants, cbhg-lite only; no JSON unless --out
    python bench/bench_quant.py --models cbhg --out /tmp/q.json
    python bench/bench_quant.py --tolerances           # defaults x every registered model x the full parity sweep
                                                       # (parity.py's basis) -> quant-tolerances-<...>.json
    python bench/bench_quant.py --render bench/results/quant-sweep.json   # the tables of docs/quantization.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

# _common first: it puts this checkout's edgeseq ahead of an installed one
from _common import (RANDOM_T, SPEECH_T, errors, feeds_for, git_commit, interleaved_p50, loose_tolerance, results_path,
                     utc_now, worst, write_json)

import edgeseq
from edgeseq.environment import fingerprint
from edgeseq.formats import get as get_format
from edgeseq.formats.onnx import OnnxRunner
from edgeseq.formats.torch import TorchRunner
from edgeseq.parity import compare
from edgeseq.quantize import Approach, GruExport, QuantConfig

ONNX = get_format("onnx")  # the ONNX format: its quantization defaults

LOOSE = loose_tolerance()


def sweep_configs(quick: bool = False) -> list[QuantConfig]:
    D, S = Approach.INT8_DYNAMIC, Approach.INT8_STATIC
    out = [QuantConfig(Approach.FP16)]
    for wt in ("int8", "uint8"):
        for pc in (False, True):
            out.append(QuantConfig(D, weight_type=wt, per_channel=pc))
    for ops in (("Conv",), ("MatMul",)):
        out.append(QuantConfig(D, weight_type="uint8", per_channel=False, op_types=ops))
    out.append(QuantConfig(D, weight_type="uint8", per_channel=False, weight_only=("GRU",)))
    out.append(QuantConfig(D, weight_type="uint8", per_channel=False, gru=GruExport.HOISTED))
    for fmt in ("qdq", "qoperator"):
        for wt in ("int8", "uint8"):
            for pc in (False, True):
                for method in ("minmax", "entropy", "percentile"):
                    out.append(QuantConfig(S, quant_format=fmt, weight_type=wt, per_channel=pc,
                                           calibration_method=method))
    for wt in ("int8", "uint8"):
        for ops in (("Conv",), ("Conv", "MatMul")):
            for method in ("minmax", "percentile"):
                out.append(QuantConfig(S, weight_type=wt, per_channel=True, op_types=ops, calibration_method=method))
    base = QuantConfig(S, weight_type="int8", per_channel=True, op_types=("Conv",))
    out.append(base.replace(weight_only=("GRU",)))
    out.append(base.replace(weight_only=("MatMul", "GRU")))
    out.append(base.replace(gru=GruExport.HOISTED))
    out.append(base.replace(op_types=("Conv", "MatMul"), gru=GruExport.HOISTED))
    out.append(QuantConfig(S, weight_type="int8", per_channel=True, gru=GruExport.HOISTED))
    for approach in (D, S):  # the shipped defaults, whatever they are now
        out.append(ONNX.default_quant(approach.value))
    if quick:
        out = [out[0], out[3], base, ONNX.default_quant("int8-static"), ONNX.default_quant("int8-dynamic")]
    seen, unique = set(), []
    for c in out:
        key = json.dumps(c.to_dict(), sort_keys=True)
        if key not in seen:
            seen.add(key)
            unique.append(c)
    return unique


def run_model(name: str, configs, args, tmp: Path) -> dict:
    spec = edgeseq.get_model(name)
    fp32 = edgeseq.export(spec, "onnx", out_dir=tmp / name / "fp32")
    feeds = feeds_for(spec)
    with TorchRunner(spec) as ref:
        refs = [ref.infer(f) for *_, f in feeds]
    lat_feed = spec.example_inputs(batch=1, time=args.time, source="speech", seed=13)
    result = {"fp32": {"size_bytes": fp32.size_bytes, "sha256": fp32.sha256}, "variants": []}
    with OnnxRunner(fp32.path, device="cpu", threads=args.threads) as base:
        result["fp32"]["errors"] = worst(errors(base, feeds, refs))
        with TorchRunner(spec, precision="int8-dynamic", threads=args.threads) as q8:
            errs = errors(q8, feeds, refs)
            torch_ms = statistics.median(_times(q8, lat_feed, max(5, args.iterations // 2)))
            fp32_torch_ms = None
            with TorchRunner(spec, threads=args.threads) as t32:
                fp32_torch_ms = statistics.median(_times(t32, lat_feed, max(5, args.iterations // 2)))
        result["torch_int8"] = {"speech": worst(errs, "speech"), "random": worst(errs, "random"), "cases": errs,
                                "p50_ms": torch_ms, "fp32_eager_p50_ms": fp32_torch_ms}
        print(f"{name}: fp32 {fp32.size_bytes / 1e6:.2f} MB; torch int8 speech rel L2 "
              f"{result['torch_int8']['speech']['rel_l2']:.2e}, {torch_ms:.2f} ms vs eager fp32 {fp32_torch_ms:.2f} ms",
              flush=True)
        result["fp32_hoisted"] = fp32_hoisted(fp32, base, feeds, refs, lat_feed, args, tmp / name)
        for k, config in enumerate(configs):
            precision = config.approach.value
            t0 = time.perf_counter()
            try:
                art = edgeseq.export(spec, "onnx", out_dir=tmp / name / str(k), precision=precision, quant=config,
                                     parent=fp32.path)
            except edgeseq.EdgeseqError as exc:
                result["variants"].append({"label": config.label(), "config": config.to_dict(), "error": str(exc)})
                print(f"  {config.label():80s} FAILED: {exc}", flush=True)
                continue
            export_s = time.perf_counter() - t0
            with OnnxRunner(art.path, device="cpu", threads=args.threads) as runner:
                errs = errors(runner, feeds, refs)
                base_ms, ms, load = interleaved_p50(base, runner, lat_feed, args.rounds, args.iterations)
            row = {
                "label": config.label(), "config": config.to_dict(), "size_bytes": art.size_bytes,
                "size_ratio": art.size_bytes / fp32.size_bytes, "p50_ms": ms, "fp32_p50_ms": base_ms,
                "latency_ratio": ms / base_ms, "foreign_load": load, "speech": worst(errs, "speech"),
                "random": worst(errs, "random"), "cases": errs, "export_s": round(export_s, 2),
                "ops": {k2: v for k2, v in art.quantization.items() if k2 != "config"},
                "is_default": config == ONNX.default_quant(precision),
            }
            result["variants"].append(row)
            print(f"  {config.label():80s} size {row['size_ratio']:.3f}x  p50 {ms:6.2f} ms "
                  f"({row['latency_ratio']:.2f}x)"
                  f"  speech rel L2 {row['speech']['rel_l2']:.2e}  random {row['random']['rel_l2']:.2e}"
                  f"{'  [default]' if row['is_default'] else ''}", flush=True)
    result["targets"] = targets(spec, fp32, tmp / name, args)
    return result


def fp32_hoisted(fp32, base, feeds, refs, lat_feed, args, tmp: Path) -> dict:
    """The hoisted-GRU rewrite alone, in fp32: what it costs before any quantization."""
    import onnx

    from edgeseq.formats.onnx.weights import hoist_gru_input_projection

    path = tmp / "fp32-hoisted.onnx"
    onnx.save(hoist_gru_input_projection(onnx.load(fp32.path)), str(path))
    with OnnxRunner(path, device="cpu", threads=args.threads) as runner:
        errs = errors(runner, feeds, refs)
        base_ms, ms, load = interleaved_p50(base, runner, lat_feed, args.rounds, args.iterations)
    row = {"size_ratio": path.stat().st_size / fp32.size_bytes, "p50_ms": ms, "fp32_p50_ms": base_ms,
           "latency_ratio": ms / base_ms, "foreign_load": load, "speech": worst(errs, "speech"),
           "random": worst(errs, "random")}
    print(f"  {'fp32 gru:hoisted (rewrite only)':80s} size {row['size_ratio']:.3f}x  p50 {ms:6.2f} ms "
          f"({row['latency_ratio']:.2f}x)  speech rel L2 {row['speech']['rel_l2']:.2e}", flush=True)
    return row


def _times(runner, feed, n):
    for _ in range(3):
        runner.infer(feed)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        runner.infer(feed)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def targets(spec, fp32, tmp: Path, args) -> list[dict]:
    """The shipped defaults at each T: size, latency vs fp32 (interleaved), speech rel L2."""
    rows = []
    with TorchRunner(spec) as ref:
        for precision in ("fp16", "int8-dynamic", "int8-static"):
            art = edgeseq.export(spec, "onnx", out_dir=tmp / "defaults", precision=precision, parent=fp32.path)
            with OnnxRunner(fp32.path, device="cpu", threads=args.threads) as base, \
                    OnnxRunner(art.path, device="cpu", threads=args.threads) as runner:
                for t in SPEECH_T:
                    feed = spec.example_inputs(batch=1, time=t, source="speech", seed=21)
                    want = ref.infer(feed)
                    got = runner.infer(feed)
                    e = compare(spec.output_names[0], want[spec.output_names[0]], got[spec.output_names[0]], LOOSE)
                    iters = max(5, args.iterations * 200 // max(t, 50))
                    base_ms, ms, load = interleaved_p50(base, runner, feed, args.rounds, iters)
                    rows.append({"precision": precision, "time": t, "size_ratio": art.size_bytes / fp32.size_bytes,
                                 "p50_ms": ms, "fp32_p50_ms": base_ms, "latency_ratio": ms / base_ms,
                                 "foreign_load": load, "rel_l2": e.rel_l2, "max_abs": e.max_abs, "cosine": e.cosine,
                                 "snr_db": e.snr_db, "config": art.quantization["config"]})
                    print(f"  default {precision:12s} T={t:5d} size {rows[-1]['size_ratio']:.3f}x  "
                          f"p50 {ms:7.2f} vs {base_ms:7.2f} ms ({ms / base_ms:.2f}x)  rel L2 {e.rel_l2:.2e}",
                          flush=True)
    return rows


def measure_tolerances(args) -> dict:
    """The shipped defaults on every registered model over the full default parity sweep (T x batch x source, what
    `edgeseq export` checks): the worst rel L2 / max abs / cosine per model and precision, the basis of the
    tolerance table in edgeseq.parity."""
    from edgeseq.models import list_models
    from edgeseq.parity import Tolerances

    loose = Tolerances({p: LOOSE for p in ("fp32", "fp16", "int8-dynamic", "int8-static")})
    out = {}
    with tempfile.TemporaryDirectory(prefix="edgeseq-bench-tol-") as tmp:
        for spec in list_models():
            out[spec.name] = {}
            fp32 = edgeseq.export(spec, "onnx", out_dir=Path(tmp) / spec.name)
            with TorchRunner(spec) as ref:
                for precision in ("fp32", "fp16", "int8-dynamic", "int8-static"):
                    art = fp32 if precision == "fp32" else edgeseq.export(
                        spec, "onnx", out_dir=Path(tmp) / spec.name, precision=precision, parent=fp32.path)
                    result = edgeseq.check(art.path, spec, tolerances=loose, reference=ref, threads=args.threads)
                    by_source = {}
                    for case in result.cases:
                        for o in case.outputs:
                            w = by_source.setdefault(case.source, {"rel_l2": 0.0, "max_abs": 0.0, "cosine": 1.0})
                            w["rel_l2"] = max(w["rel_l2"], o.rel_l2)
                            w["max_abs"] = max(w["max_abs"], o.max_abs)
                            w["cosine"] = min(w["cosine"], o.cosine)
                    worst_case = max(((c.batch, c.time, c.source, o.rel_l2) for c in result.cases for o in c.outputs),
                                     key=lambda x: x[3])
                    out[spec.name][precision] = {"cases": len(result.cases), "by_source": by_source,
                                                 "worst_case": {"batch": worst_case[0], "time": worst_case[1],
                                                                "source": worst_case[2], "rel_l2": worst_case[3]}}
                    print(f"{spec.name:15s} {precision:12s} " + "  ".join(
                        f"{src} rel L2 {w['rel_l2']:.2e} max abs {w['max_abs']:.2e}" for src, w in by_source.items())
                        + f"  (worst at batch {worst_case[0]} T {worst_case[1]} {worst_case[2]})", flush=True)
    return out


HIGHLIGHTS = (  # (label in the table, QuantConfig.label() of the row) for the sweep table of docs/quantization.md
    ("fp16", "fp16"),
    ("dynamic, weights int8, per-tensor", "int8-dynamic w:int8 per-tensor all-ops"),
    ("dynamic, weights uint8, per-tensor", "int8-dynamic w:uint8 per-tensor all-ops"),
    ("dynamic, weights uint8, per-channel", "int8-dynamic w:uint8 per-channel all-ops"),
    ("dynamic, uint8, Conv only", "int8-dynamic w:uint8 per-tensor Conv"),
    ("**dynamic default** (uint8 per-tensor + GRU weights int8)",
     "int8-dynamic w:uint8 per-tensor all-ops weight-only:GRU"),
    ("dynamic, uint8, hoisted GRU projection", "int8-dynamic w:uint8 per-tensor all-ops gru:hoisted"),
    ("static QDQ, w int8 per-channel, MinMax, all ops", "int8-static qdq w:int8 a:uint8 per-channel minmax all-ops"),
    ("static QDQ, ..., Entropy (2048 bins), all ops", "int8-static qdq w:int8 a:uint8 per-channel entropy all-ops"),
    ("static QDQ, ..., Percentile 99.999, all ops", "int8-static qdq w:int8 a:uint8 per-channel percentile all-ops"),
    ("static QDQ, w int8 per-tensor, MinMax, all ops", "int8-static qdq w:int8 a:uint8 per-tensor minmax all-ops"),
    ("static QDQ, w uint8 per-channel, MinMax, all ops", "int8-static qdq w:uint8 a:uint8 per-channel minmax all-ops"),
    ("static QOperator, w int8 per-channel, MinMax, all ops",
     "int8-static qoperator w:int8 a:uint8 per-channel minmax all-ops"),
    ("static QDQ, w int8 per-channel, Conv + MatMul", "int8-static qdq w:int8 a:uint8 per-channel minmax Conv+MatMul"),
    ("static QDQ, w int8 per-channel, Conv only", "int8-static qdq w:int8 a:uint8 per-channel minmax Conv"),
    ("**static default** (Conv only + MatMul, GRU weights int8)",
     "int8-static qdq w:int8 a:uint8 per-channel minmax Conv weight-only:MatMul+GRU"),
    ("static, Conv only, hoisted GRU projection", "int8-static qdq w:int8 a:uint8 per-channel minmax Conv gru:hoisted"),
)


def render(data: dict) -> str:
    """The tables of docs/quantization.md from a sweep JSON: highlights of the sweep, then the targets of the defaults."""
    models = list(data["models"])
    head = "| setting | " + " | ".join(f"{m} size | {m} p50 | {m} rel L2 speech / random" for m in models) + " |"
    lines = [head, "|---|" + "---|---|---|" * len(models)]

    def cells(row):
        return (f"{row['size_ratio']:.2f}x | {row['latency_ratio']:.2f}x | "
                f"{row['speech']['rel_l2']:.1e} / {row['random']['rel_l2']:.1e}")

    hoisted = {m: data["models"][m].get("fp32_hoisted") for m in models}
    rows = [("fp32 + hoisted GRU projection (rewrite only)", hoisted)]
    for title, label in HIGHLIGHTS:
        rows.append((title, {m: next((v for v in data["models"][m]["variants"] if v.get("label") == label), None)
                             for m in models}))
    for title, by_model in rows:
        if all(v is None or "error" in v for v in by_model.values()):
            continue
        lines.append(f"| {title} | " + " | ".join(cells(by_model[m]) if by_model[m] else "- | - | -"
                                                    for m in models) + " |")
    lines.append("")
    for m in models:
        r = data["models"][m]["torch_int8"]
        lines.append(f"- PyTorch's int8 (torch.ao dynamic, Linear + GRU) on {m}: rel L2 {r['speech']['rel_l2']:.1e} "
                     f"(speech) / {r['random']['rel_l2']:.1e} (random); eager p50 "
                     f"{r['p50_ms'] / r['fp32_eager_p50_ms']:.2f}x eager fp32 (not interleaved)")
    lines += ["", "| model | precision | size x fp32 | p50 x fp32 at T = 7 / 50 / 200 / 1000 | worst rel L2 (speech) |",
              "|---|---|---|---|---|"]
    for m in models:
        by_precision = {}
        for row in data["models"][m]["targets"]:
            by_precision.setdefault(row["precision"], []).append(row)
        for precision, rows_ in by_precision.items():
            lat = " / ".join(f"{r['latency_ratio']:.2f}" for r in rows_)
            lines.append(f"| {m} | {precision} | {rows_[0]['size_ratio']:.3f} | {lat} | "
                         f"{max(r['rel_l2'] for r in rows_):.1e} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["cbhg-lite", "cbhg"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--time", type=int, default=200, help="T for the sweep's latency")
    ap.add_argument("--rounds", type=int, default=5, help="alternating fp32 / variant timing rounds")
    ap.add_argument("--iterations", type=int, default=10, help="timed runs per round")
    ap.add_argument("--quick", action="store_true", help="a few variants on cbhg-lite; writes JSON only with --out")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--tolerances", action="store_true", help="measure the defaults on every model (full sweep)")
    ap.add_argument("--render", type=Path, default=None, help="print the docs/quantization.md tables of a sweep JSON and exit")
    args = ap.parse_args()
    if args.render:
        print(render(json.loads(args.render.read_text())))
        return
    if args.tolerances:
        data = {"schema": "edgeseq.bench.quant-tolerances/1", "created": utc_now(), "environment": fingerprint(),
                "git_commit": git_commit(), "models": measure_tolerances(args)}
        write_json(args.out or results_path("quant-tolerances"), data)
        return
    if args.quick:
        args.models, args.rounds, args.iterations = ["cbhg-lite"], 2, 5
    out = args.out or (None if args.quick else results_path("quant-sweep"))
    configs = sweep_configs(args.quick)
    started = time.perf_counter()
    data = {
        "schema": "edgeseq.bench.quant/1",
        "created": utc_now(),
        "environment": fingerprint(),
        "git_commit": git_commit(),
        "settings": {"threads": args.threads, "latency_time": args.time, "rounds": args.rounds,
                     "iterations": args.iterations, "speech_times": SPEECH_T, "random_times": RANDOM_T},
        "models": {},
    }
    with tempfile.TemporaryDirectory(prefix="edgeseq-bench-quant-") as tmp:
        for name in args.models:
            data["models"][name] = run_model(name, configs, args, Path(tmp))
    data["seconds"] = round(time.perf_counter() - started, 1)
    if out:
        write_json(out, data)


if __name__ == "__main__":
    main()
