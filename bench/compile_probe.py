"""Probe: does torch.compile around the fused CBHG bring batch 1, T=200, fp16 to <= 0.4 ms on a GPU?

    python3 bench/compile_probe.py              # GPU, < 3 minutes -> bench/results/compile-probe-<card>.json
    TRITON_INTERPRET=1 python3 bench/compile_probe.py --dry-run                      # CPU: checks the logic only

The fused model in a CUDA graph spends ~0.3 ms in the BiGRU and ~0.16-0.19 ms in ~20 small kernels around it
(conv bank, pool, projections, residual, highways). Inductor can fuse that elementwise work; the compiled code is
then captured, with the Triton GRU kernel, in ONE CUDA graph (the runner's own capture, not inductor's). Variants,
each against the PyTorch fp32 original on the CPU (rel L2) and timed as device p50 over CUDA-graph replays:

  a-fused-cudnn        fuse_for_inference(gru="cudnn") + CUDA graph (the gpu_check baseline)
  b-fused-triton       fuse_for_inference(gru="triton") + CUDA graph
  c-compile-break      torch.compile(b, mode="default"), the BiGRU behind torch.compiler.disable: a graph break,
                       compiled regions before and after, the GRU (projection matmul + kernel) runs eagerly
                       (TritonBiGRU's default, compile_graph_break=True; TorchCudaGraphRunner(compile=...) runs this)
  d-compile-op         torch.compile(b, mode="default") with compile_graph_break=False: the recurrence is the custom
                       op edgeseq::bigru_recurrence, so one compiled graph that also owns the GRU's input projection
  e-compile-autotune   as d with mode="max-autotune-no-cudagraphs" (only if d compiled fast and time is left)
  f-compile-cudnn      torch.compile(a): cuDNN GRU (dynamo breaks the graph at nn.GRU), for comparison

Compilation happens in warm-up at the measured shape before capture; during capture and timing a recompile is an
error. A failing variant prints its error and the run goes on. Compile variants start only while --budget-s allows
(e only if a default-mode compile took <= 30 s); at --hard-limit-s the running variant is aborted and the rest are
skipped. The table is printed last; the JSON is rewritten after every row, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

# _common first: it puts this checkout's edgeseq ahead of an installed one
from _common import card_tag, graph_p50_ms, print_table, require_gpu, results_path, write_json

import numpy as np
import torch
import torch._dynamo
from torch import nn

from edgeseq.formats.torch import TorchCudaGraphRunner, TorchRunner
from edgeseq.models import get_model
from edgeseq.models.fuse import fuse_for_inference
from edgeseq.parity import DEFAULT_TOLERANCES, compare

TARGET_MS = 0.4


VARIANTS = {
    # name: (gru kernel, compile mode or None, GRU behind a graph break)
    "a-fused-cudnn": ("cudnn", None, False),
    "b-fused-triton": ("triton", None, False),
    "c-compile-break": ("triton", "default", True),
    "d-compile-op": ("triton", "default", False),
    "e-compile-autotune": ("triton", "max-autotune-no-cudagraphs", False),
    "f-compile-cudnn": ("cudnn", "default", False),
}

# (model, precision, variant) in the order they run: what answers the question first; compile variants need budget
PLAN = [
    ("cbhg", "fp16", "a-fused-cudnn"), ("cbhg", "fp16", "b-fused-triton"), ("cbhg", "fp16", "d-compile-op"),
    ("cbhg", "fp16", "c-compile-break"),
    ("cbhg-lite", "fp16", "a-fused-cudnn"), ("cbhg-lite", "fp16", "b-fused-triton"),
    ("cbhg-lite", "fp16", "d-compile-op"), ("cbhg-lite", "fp16", "c-compile-break"),
    ("cbhg", "fp16", "e-compile-autotune"),
    ("cbhg", "fp32", "a-fused-cudnn"), ("cbhg", "fp32", "b-fused-triton"), ("cbhg", "fp32", "d-compile-op"),
    ("cbhg", "fp16", "f-compile-cudnn"), ("cbhg-lite", "fp16", "e-compile-autotune"),
]


def versions() -> dict:
    out = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": sys.version.split()[0]}
    try:
        import triton

        out["triton"] = triton.__version__
    except ImportError:
        out["triton"] = None
    if torch.cuda.is_available():
        out["device"] = torch.cuda.get_device_name(0)
        out["capability"] = list(torch.cuda.get_device_capability(0))
        out["cudnn"] = torch.backends.cudnn.version()
    else:
        out["device"] = "cpu"
    return out


def build(spec, variant: str, dtype: torch.dtype, device: str, backend: str) -> nn.Module:
    gru, mode, graph_break = VARIANTS[variant]
    module = fuse_for_inference(spec.build(), gru=gru).to(device, dtype).eval()
    if gru == "triton":
        module.gru.compile_graph_break = graph_break  # c: eager GRU behind a graph break; d, e: the custom op
    if mode is None:
        return module
    torch._dynamo.reset()  # every variant compiles CBHG.forward afresh: no stale entries, no cache-size limit
    from torch._dynamo.utils import counters

    counters.clear()  # graph / graph-break counts per variant
    if backend == "inductor":
        return torch.compile(module, backend="inductor", mode=mode, dynamic=False, fullgraph=False)
    return torch.compile(module, backend=backend, dynamic=False, fullgraph=False)  # dry run: no inductor mode


def graph_stats() -> dict:
    """How many graphs dynamo compiled and how many graph breaks it took, from its counters."""
    from torch._dynamo.utils import counters

    return {"graphs": int(counters["stats"].get("unique_graphs", 0)),
            "graph_breaks": int(sum(counters["graph_break"].values()))}


def count_kernels(runner, args) -> int | None:
    """Kernels (and copies) one uncaptured forward launches on the GPU: what the CUDA graph will hold."""
    if not torch.cuda.is_available():
        return None
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        TorchRunner._forward(runner, args)
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)


def gru_alone(module: nn.Module, batch: int, steps: int, dtype: torch.dtype, precision: str,
              iterations: int) -> dict:
    """BiGRU alone (input projection + recurrence) and, for the Triton one, the recurrence kernel alone."""
    from edgeseq.kernels.triton_gru import TritonBiGRU, bigru_recurrence

    gru = module.gru
    width = gru.input_size if isinstance(gru, TritonBiGRU) else gru.rnn.input_size
    x = torch.randn(batch, steps, width, device="cuda", dtype=dtype)
    flags = torch.backends.cudnn.flags(enabled=True, benchmark=True, allow_tf32=precision != "fp32")
    out = {}
    with torch.inference_mode(), flags:
        out["gru_ms"] = graph_p50_ms(lambda: gru(x), iterations)
        if isinstance(gru, TritonBiGRU):
            gi = torch.nn.functional.linear(x, gru.w_ih, gru.b_ih)
            out["recurrence_ms"] = graph_p50_ms(lambda: bigru_recurrence(gi, gru.w_hh_t, gru.b_hh, gru.config),
                                                 iterations)
    return out


def run_variant(spec, variant: str, precision: str, feed, expected, args) -> dict:
    dtype = torch.float16 if precision == "fp16" else torch.float32
    cuda = not args.dry_run
    device = "cuda" if cuda else "cpu"
    _, mode, _ = VARIANTS[variant]
    row: dict = {"variant": variant, "compile_mode": mode}
    module = build(spec, variant, dtype, device, args.backend)
    runner_cls = TorchCudaGraphRunner if cuda else TorchRunner
    runner = runner_cls(spec, module=module, precision=precision, device=device)
    try:
        runner.load()
        staged = runner._stage(feed)
        started = time.time()
        for _ in range(3):  # compiles (if any) here, at the measured shape, outside any capture
            TorchRunner._forward(runner, staged)
        if cuda:
            torch.cuda.synchronize()
        row["warmup_s"] = round(time.time() - started, 2)
        if mode is not None:
            row.update(graph_stats())
        strict = hasattr(torch._dynamo.config, "error_on_recompile")  # a recompile while capturing would break it
        if strict:
            torch._dynamo.config.error_on_recompile = True
        try:
            got = runner.infer(feed)  # CUDA: captures the graph here and replays it
            out_name = spec.output_names[0]
            err = compare(out_name, expected[out_name], got[out_name], DEFAULT_TOLERANCES.get(precision, out_name))
            row.update(passed=err.passed, rel_l2=err.rel_l2, max_abs=err.max_abs, reason=err.reason)
            if cuda:
                dev = np.asarray(runner.device_times_ms(feed, warmup=20, iterations=args.iterations))
            else:
                dev = []
                for _ in range(args.iterations):
                    t0 = time.perf_counter()
                    runner._forward(staged)
                    dev.append((time.perf_counter() - t0) * 1e3)
                dev = np.asarray(dev)
            row.update(p50_ms=float(np.percentile(dev, 50)), p90_ms=float(np.percentile(dev, 90)),
                       min_ms=float(dev.min()))
        finally:
            if strict:
                torch._dynamo.config.error_on_recompile = False
        if cuda and args.kernels:  # after capture and timing: the profiler never runs near a capture
            try:
                row["kernels"] = count_kernels(runner, staged)
            except Exception as exc:  # a count is nice to have, not worth the row
                row["kernels_error"] = f"{type(exc).__name__}: {exc}"
        if mode is None and cuda:  # the GRU's share, once per model and kernel (the compiled ones run the same GRU)
            batch, steps = next(iter(feed.values())).shape[:2]
            row.update(gru_alone(runner.module, batch, steps, dtype, precision, max(50, args.iterations // 4)))
    finally:
        runner.close()
    return row


def add_rest(rows) -> None:
    """rest_ms: the time outside the GRU, p50 minus the GRU-alone time of the same model and precision: BiGRU
    with its projection (a, b: measured there; c, f: the GRU runs as in b or a), or the recurrence kernel alone
    for d and e, whose compiled graph holds the projection."""
    alone = {(r["model"], r["precision"], r["variant"][0]): r for r in rows if r["variant"][0] in "ab"}
    source = {"a": ("a", "gru_ms"), "f": ("a", "gru_ms"), "b": ("b", "gru_ms"), "c": ("b", "gru_ms"),
              "d": ("b", "recurrence_ms"), "e": ("b", "recurrence_ms")}
    for r in rows:
        base, key = source[r["variant"][0]]
        ref = alone.get((r["model"], r["precision"], base), {}).get(key)
        if r.get("p50_ms") is not None and ref is not None:
            r["rest_ms"] = r["p50_ms"] - ref


def print_results(rows, info) -> None:
    base = {(r["model"], r["precision"]): r.get("p50_ms") for r in rows if r["variant"] == "a-fused-cudnn"}
    table = []
    for r in rows:
        p50 = r.get("p50_ms")
        ref = base.get((r["model"], r["precision"]))

        def ms(key):
            return f"{r[key]:.3f}" if r.get(key) is not None else "-"

        mark = "<=target" if p50 is not None and p50 <= TARGET_MS and r["precision"] == "fp16" else ""
        error = next((line for line in r["error"].splitlines() if line.strip()), "")[:100] if r.get("error") else ""
        table.append((r["model"], r["precision"], r["variant"],
                      "-" if "passed" not in r else ("PASS" if r["passed"] else "FAIL"),
                      f"{r['rel_l2']:.1e}" if r.get("rel_l2") is not None else "-", ms("p50_ms"), ms("min_ms"),
                      f"{ref / p50:.2f}x" if p50 and ref else "-", r.get("warmup_s", "-"),
                      f"{r['graphs']}/{r['graph_breaks']}" if "graphs" in r else "-",
                      "-" if r.get("kernels") is None else r["kernels"], ms("gru_ms"), ms("recurrence_ms"),
                      ms("rest_ms"), " ".join(filter(None, (error, mark)))))
    print_table(("model", "prec", "variant", "parity", "rel L2", "p50 ms", "min ms", "vs a", "warmup s",
                 "graphs/breaks", "kernels", "GRU ms", "recur ms", "rest ms", "error / note"), table,
                title=f"{info.get('device')}: torch {info['torch']}, triton {info.get('triton')}, CUDA "
                      f"{info.get('cuda')}; batch {rows[0]['batch'] if rows else '-'} x T "
                      f"{rows[0]['time'] if rows else '-'}; target {TARGET_MS} ms (cbhg fp16)")


class OutOfTime(Exception):
    pass


_ARMED = [False]  # True while a variant runs: only then does the alarm raise


def _out_of_time(signum, frame):
    """--hard-limit-s reached: abort the running variant (caught like any failure), so the table still prints;
    between variants the loop's own time check skips the rest."""
    if _ARMED[0]:
        _ARMED[0] = False
        raise OutOfTime("hard time limit reached (--hard-limit-s); variant aborted")


def write(out_path: Path, info: dict, args, rows: list[dict], skipped: list[dict], started: float) -> None:
    write_json(out_path, {**info, "target_ms": TARGET_MS, "seconds": round(time.time() - started, 1),
                          "dry_run": args.dry_run, "backend": args.backend, "rows": rows, "skipped": skipped},
               say=False)


def skip(skipped: list[dict], model: str, precision: str, variant: str, reason: str) -> None:
    print(f"skip {model} {precision} {variant}: {reason}", flush=True)
    skipped.append({"model": model, "precision": precision, "variant": variant, "reason": reason})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="JSON path (default bench/results/compile-probe-<device>.json)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--time", type=int, default=200)
    parser.add_argument("--iterations", type=int, default=300, help="timed replays per variant (>= 200 on GPU)")
    parser.add_argument("--hard-limit-s", type=float, default=210.0,
                        help="abort the variant running at this wall time (SIGALRM), skip the rest, print the table")
    parser.add_argument("--budget-s", type=float, default=165.0,
                        help="stop starting compile variants once this much wall time is spent or expected")
    parser.add_argument("--only", nargs="*", default=None, help="variant names (or prefixes, e.g. a b d) to run")
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--no-kernels", dest="kernels", action="store_false",
                        help="skip counting the kernels of one forward with the profiler")
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU, no CUDA graphs, host timing: checks the script only (the Triton GRU needs "
                             "TRITON_INTERPRET=1)")
    parser.add_argument("--backend", default=None, help="torch.compile backend (default inductor; dry run aot_eager)")
    args = parser.parse_args()
    args.backend = args.backend or ("aot_eager" if args.dry_run else "inductor")
    no_gpu = None if args.dry_run else require_gpu("compile_probe.py (or --dry-run on the CPU)")
    if no_gpu:
        print(no_gpu, file=sys.stderr)
        return 2
    info = versions()
    print("versions:", json.dumps(info), flush=True)
    out_path = Path(args.out or results_path("compile-probe", card_tag()))
    torch.set_num_threads(min(16, os.cpu_count() or 1))

    plan = [p for p in PLAN if (args.models is None or p[0] in args.models)
            and (args.only is None or any(p[2].startswith(o) for o in args.only))]
    started = time.time()
    refs: dict = {}
    rows: list[dict] = []
    compile_s: list[float] = []
    skipped: list[dict] = []
    signal.signal(signal.SIGALRM, _out_of_time)
    signal.setitimer(signal.ITIMER_REAL, args.hard_limit_s)
    for name, precision, variant in plan:
        mode = VARIANTS[variant][1]
        spent = time.time() - started
        if spent >= args.hard_limit_s:
            skip(skipped, name, precision, variant, f"past the hard limit {args.hard_limit_s:.0f} s")
            continue
        if mode is not None:  # guard: skip a compile that would run past the budget
            # default mode: like the slowest compile so far (the first one pays inductor's start-up); autotune:
            # a few times the fastest default compile, and only if that one was fast
            expected = 1.2 * max(compile_s) if compile_s else 40.0
            if "autotune" in mode:
                if not compile_s:
                    skip(skipped, name, precision, variant, "no default-mode compile measured before it")
                    continue
                fastest = min(compile_s)
                if fastest > 30.0:
                    skip(skipped, name, precision, variant, f"the fastest default-mode compile took {fastest:.0f} s")
                    continue
                expected = 4.0 * fastest
            if spent + expected > args.budget_s:
                skip(skipped, name, precision, variant,
                     f"{spent:.0f} s spent + ~{expected:.0f} s expected > budget {args.budget_s:.0f} s")
                continue
        row = {"model": name, "precision": precision, "batch": args.batch, "time": args.time}
        t0 = time.time()
        _ARMED[0] = True
        try:
            if name not in refs:
                spec = get_model(name)
                feed = spec.example_inputs(batch=args.batch, time=args.time, source="speech",
                                           seed=args.batch + args.time)
                with TorchRunner(spec, device="cpu") as reference:
                    refs[name] = (spec, feed, reference.infer(feed))
            spec, feed, expected_out = refs[name]
            row.update(run_variant(spec, variant, precision, feed, expected_out, args))
        except Exception as exc:  # one failing variant must not end the probe
            row.update(variant=variant, compile_mode=mode, error=f"{type(exc).__name__}: {exc}")
            traceback.print_exc(limit=-8)
        finally:
            _ARMED[0] = False
        row["seconds"] = round(time.time() - t0, 2)
        if mode is not None and "warmup_s" in row:
            compile_s.append(row["warmup_s"])
        rows.append(row)
        print(f"{name:10s} {precision} {variant:19s} "
              + (f"{'PASS' if row['passed'] else 'FAIL'} relL2 {row['rel_l2']:.1e} p50 {row['p50_ms']:.3f} ms"
                 if "p50_ms" in row else f"ERROR {row.get('error', '')[:200]}")
              + f"  ({row['seconds']} s)", flush=True)
        write(out_path, info, args, rows, skipped, started)
    signal.setitimer(signal.ITIMER_REAL, 0)
    add_rest(rows)
    write(out_path, info, args, rows, skipped, started)
    print_results(rows, info)
    print(f"wrote {out_path} in {time.time() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
