"""LiteRT static int8: where the error comes from, and what each ai-edge-quantizer option costs, in one run.

For each model (cbhg, cbhg-lite) the fp32 .tflite is exported once and quantized several ways:

1. sensitivity: one group of ops in int8 (activations and weights) with everything else float, and everything in
   int8 but that group; the worst relative L2 against the PyTorch original shows which ops carry the error;
2. options: the previous recipe (everything int8 but the GRU recurrence), the same with the output kept float,
   int16 activations (a16w8), the shipped recipe (`edgeseq.export(..., precision="int8-static")`: the convolution
   front end in int8, the rest float) and calibration variants of it (more utterances, one batched step, mixed
   lengths, OCTAV weight clipping).

Parity: worst relative L2 over T in {7, 200, 1000}, batch 1, real speech and random inputs (the int8-static gate is
1.5e-2). Latency: p50 at batch 1, T=200, fixed thread count; in every round each artifact is timed right after the
fp32 one, and its ratio to fp32 is the median of the per-round ratios. The machine is shared: read ratios.

    python bench/bench_tflite_int8.py               # -> bench/results/tflite-int8-static-<machine>-<cpu features>.json
    python bench/bench_tflite_int8.py --quick       # cbhg-lite, fewer options and iterations; JSON only with --out
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

# _common first: it puts this checkout's edgeseq ahead of an installed one
from _common import ForeignLoad, print_table, results_path, write_report

import numpy as np

import edgeseq
from edgeseq.enums import Precision
from edgeseq.environment import fingerprint
from edgeseq.formats import tflite
from edgeseq.formats.tflite import convert as tflite_convert, options as tflite_options
from edgeseq.formats.tflite.runner import _interpreter_class
from edgeseq.latency import measure

PARITY_TIMES = (7, 200, 1000)
# Op groups of the CBHG graph, by the module scope in the tensor names (the quantizer matches an op's output names
# followed by ";").
GROUPS = {
    "conv bank": (r"ConvBank[A-Za-z0-9]*_bank", "ALL_SUPPORTED"),
    "max pool": ("ShiftMaxPool_pool", "ALL_SUPPORTED"),
    "projections": (r"[A-Za-z0-9]*_projections/", "ALL_SUPPORTED"),
    "residual add": (r"edgeseq\.models\.cbhg\.CBHG;[0-9]+;$", "ALL_SUPPORTED"),
    "linear before highway": ("Linear_pre_highway", "ALL_SUPPORTED"),
    "highway": ("Sequential_highway", "ALL_SUPPORTED"),
    "GRU input projection": ("LoopGRU", "FULLY_CONNECTED"),
    "output reshape (after the GRU)": ("serving_default_output", "ALL_SUPPORTED"),
}
LOOP = "LoopGRU|edgeseq_while"


def recipe(rules, *, a16=False, algorithm="MIN_MAX_UNIFORM_QUANT"):
    """rules: (regex, op name, 'int8' | 'float'), later rules win; graph input and output always float."""
    from ai_edge_quantizer import algorithm_manager as am, qtyping, recipe_manager

    manager = recipe_manager.RecipeManager()
    for regex, op, kind in rules:
        op = getattr(qtyping.TFLOperationName, op)
        if kind == "float":
            manager.add_quantization_config(regex=regex, operation_name=op, algorithm_key=am.AlgorithmName.NO_QUANTIZE)
        else:
            manager.add_static_config(regex=regex, operation_name=op, activation_num_bits=16 if a16 else 8,
                                      weight_num_bits=8, algorithm_key=getattr(am.AlgorithmName, algorithm))
    for boundary in (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT):
        manager.add_quantization_config(regex=".*", operation_name=boundary,
                                        algorithm_key=am.AlgorithmName.NO_QUANTIZE)
    return manager.get_quantization_recipe()


ALL_INT8 = [(".*", "ALL_SUPPORTED", "int8"), (LOOP, "ALL_SUPPORTED", "float"), ("LoopGRU", "FULLY_CONNECTED", "int8")]
FRONT_END = [(tflite_options._INT8_STATIC_SCOPES, "ALL_SUPPORTED", "int8")]


def options(spec, quick: bool) -> dict:
    """name -> (recipe or None for the shipped one, calibration feeds or None for the shipped ones)."""
    calib = lambda n=8, t=200: list(spec.calibration_inputs(n=n, time=t))  # noqa: E731
    out = {
        "all int8 (previous default)": (recipe(ALL_INT8), None),
        "all int8, output float": (recipe(ALL_INT8 + [("serving_default_output", "ALL_SUPPORTED", "float")]), None),
        "all int8, int16 activations (a16w8)": (recipe(ALL_INT8, a16=True), None),
        "conv front end int8 (shipped)": (None, None),
    }
    if quick:
        return out
    name = spec.input_names[0]
    out.update({
        "conv front end, 32 utterances": (None, calib(32)),
        "conv front end, one batched step (global min/max)": (
            None, [{name: np.concatenate([f[name] for f in calib()], 0)}]),
        "conv front end, T = 50 / 200 / 1000": (None, calib(4, 50) + calib(4, 200) + calib(4, 1000)),
        "conv front end, OCTAV weight clipping": (recipe(FRONT_END, algorithm="OCTAV"), None),
    })
    return out


def op_precisions(path: Path) -> dict:
    """Compute op types -> {output dtype: count} for the ops that carry weights or arithmetic."""
    interp = _interpreter_class()(model_path=str(path))
    dtypes = {d["index"]: np.dtype(d["dtype"]).name for d in interp.get_tensor_details()}
    out: dict = {}
    for op in interp._get_ops_details():
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL", "ADD", "MUL", "SUB",
                             "LOGISTIC", "SOFTMAX") and len(op["outputs"]):
            dt = dtypes.get(int(op["outputs"][0]), "?")
            if dt != "int32":  # shape arithmetic
                out.setdefault(op["op_name"], {}).setdefault(dt, 0)
                out[op["op_name"]][dt] += 1
    return out


def parity(name: str, path: Path) -> dict:
    out = {}
    for source in ("speech", "random"):
        res = edgeseq.check(path, name, times=PARITY_TIMES, batches=(1,), sources=(source,), precision="int8-static")
        out[source] = res.worst.rel_l2
    out["passed"] = bool(max(out.values()) <= edgeseq.get_model(name).tolerances.get("int8-static", "").rel_l2)
    return out


def quantize(spec, content: bytes, path: Path, rec, samples) -> dict:
    try:
        started = time.perf_counter()
        path.write_bytes(tflite_convert._quantize(content, Precision.INT8_STATIC, spec, tflite.TfliteOptions(), recipe=rec,
                                          samples=samples))
        return {"quantize_seconds": round(time.perf_counter() - started, 1), "size_bytes": path.stat().st_size}
    except Exception as exc:  # an option the quantizer refuses is a result too
        return {"error": str(exc).splitlines()[0][:300]}


def bench_model(name: str, args, workdir: Path) -> dict:
    spec = edgeseq.get_model(name)
    fp32 = edgeseq.export(name, "tflite", out_dir=workdir / name)
    content = Path(fp32.path).read_bytes()
    sensitivity = {}
    names = [d["name"] + ";" for d in _interpreter_class()(model_path=fp32.path).get_tensor_details()]
    for group, (regex, op) in ({} if args.quick else GROUPS).items():
        if not any(re.search(regex, n) for n in names):  # cbhg has no linear before the highway (in_dim == highway
            print(f"  {name}: no tensor matches group {group!r} ({regex}); left out", file=sys.stderr)  # dim)
            continue
        only = [(regex, op, "int8"), (LOOP, "ALL_SUPPORTED", "float")] + \
            ([(regex, op, "int8")] if regex == "LoopGRU" else [])
        row = {}
        for kind, rules in (("only_this_int8", only), ("all_int8_but_this", ALL_INT8 + [(regex, op, "float")])):
            path = workdir / name / f"sens-{len(sensitivity)}-{kind}.tflite"
            row[kind] = quantize(spec, content, path, recipe(rules), None)
            if "error" not in row[kind]:
                row[kind]["parity"] = parity(name, path)
        sensitivity[group] = row
        print(f"  {name}: {group}: {row}", file=sys.stderr, flush=True)
    rows, paths = {}, {"fp32": Path(fp32.path)}
    for k, (option, (rec, samples)) in enumerate(options(spec, args.quick).items()):
        path = workdir / name / f"option-{k}.tflite"
        if rec is None and samples is None:  # the shipped path, end to end
            art = edgeseq.export(name, "tflite", out_dir=workdir / name / "shipped", precision="int8-static")
            path, row = Path(art.path), {"size_bytes": art.size_bytes, "notes": list(art.notes)}
        else:
            row = quantize(spec, content, path, rec, samples)
        if "error" not in row:
            row["parity"] = parity(name, path)
            row["op_precisions"] = op_precisions(path)
            paths[option] = path
        rows[option] = row
        print(f"  {name}: {option}: {row.get('parity', row.get('error'))}", file=sys.stderr, flush=True)
    latency, ratios, foreign = measure_all(spec, paths, args)
    for option, row in rows.items():
        if option in latency:
            row["p50_ms"] = latency[option]
            row["p50_x_fp32"] = ratios[option]
    return {"model": name, "fp32": {"size_bytes": fp32.size_bytes, "p50_ms": latency["fp32"]},
            "foreign_cpu_share": foreign, "sensitivity": sensitivity, "options": rows}


def measure_all(spec, paths: dict, args) -> tuple[dict, dict, float | None]:
    """p50 of each artifact and its ratio to fp32, each timed right after fp32 in every round (the ratio is the
    median of the per-round ratios, which cancels slow drifts of the shared machine's load)."""
    feed = spec.example_inputs(batch=1, time=args.time)
    runners = {k: tflite.TfliteRunner(p, threads=args.threads).load() for k, p in paths.items()}
    p50: dict = {k: [] for k in paths}
    ratios: dict = {k: [] for k in paths if k != "fp32"}
    try:
        with ForeignLoad() as load:
            for _ in range(args.rounds):
                for label in ratios:
                    base = measure(runners["fp32"], feed, warmup=args.warmup, iterations=args.iterations).p50_ms
                    mine = measure(runners[label], feed, warmup=args.warmup, iterations=args.iterations).p50_ms
                    p50["fp32"].append(base)
                    p50[label].append(mine)
                    ratios[label].append(mine / base)
    finally:
        for runner in runners.values():
            runner.close()
    med = lambda v: float(np.median(v))  # noqa: E731
    return {k: med(v) for k, v in p50.items()}, {k: med(v) for k, v in ratios.items()}, load.share


def render(results: list[dict]) -> None:
    for r in results:
        if r["sensitivity"]:
            rows = []
            for group, row in r["sensitivity"].items():
                cells = []
                for kind in ("only_this_int8", "all_int8_but_this"):
                    p = row[kind].get("parity")
                    cells.append(f"{p['speech']:.2g} / {p['random']:.2g}" if p else "quantizer: " +
                                 row[kind]["error"].split(": ", 1)[-1][:40])
                rows.append((group, *cells))
            print_table(("group", "only this group int8: rel L2 speech / random", "all int8 but this group"), rows,
                        title=r["model"])
        rows = []
        for option, row in r["options"].items():
            p = row.get("parity")
            rows.append((option, f"failed: {row['error'][:80]}") if not p else (
                option, f"{p['speech']:.2g}", f"{p['random']:.2g}", "yes" if p["passed"] else "no",
                f"{row['size_bytes'] / 1e6:.2f}", f"{row['p50_ms']:.2f}", f"{row['p50_x_fp32']:.2f}x"))
        print_table(("option", "rel L2 speech", "random", "passes 1.5e-2", "size MB", "p50 ms", "x fp32"), rows,
                    title=f"{r['model']} (fp32 {r['fp32']['p50_ms']:.2f} ms; foreign CPU share "
                          f"{r['foreign_cpu_share'] or 0:.2f})")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["cbhg", "cbhg-lite"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--time", type=int, default=200)
    p.add_argument("--iterations", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.iterations, args.rounds = ["cbhg-lite"], 10, 1
    out = args.out if args.out is not None else (None if args.quick else results_path("tflite-int8-static"))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeseq-bench-int8-") as tmp:
        results = [bench_model(name, args, Path(tmp)) for name in args.models]
    render(results)
    write_report(out, "tflite-int8-static", started, fingerprint(),
                 {"batch": 1, "time": args.time, "threads": args.threads, "iterations": args.iterations,
                  "warmup": args.warmup, "rounds": args.rounds, "parity_times": list(PARITY_TIMES)},
                 results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
