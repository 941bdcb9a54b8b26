"""CPU runtimes, measured side by side in one run: PyTorch eager vs ONNX Runtime, against a FLOP floor.

For each model x thread count (batch 1, T frames):
  1. p50 of PyTorch eager (TorchRunner) and ONNX Runtime CPU (OnnxRunner), end to end through edgeseq's Runner
     interface (host in, host out); "x faster" = eager p50 / ONNX Runtime p50.
  2. the sgemm rate at that thread count, measured in this run (best of several 1024^3 fp32 matmuls, before and
     after the latency runs), in torch (torch.mm: MKL) and in ONNX Runtime (a one-node MatMul graph: MLAS);
     FLOP floor = model FLOPs / the higher of the two rates; each runtime's p50 as a multiple of that floor.
     (Both are kept because they differ by ~2x on some CPUs, e.g. MKL takes its AVX2 path on AMD EPYC, and a
     floor from the slower library is no floor: ONNX Runtime runs below it.)
  3. where the time goes, per top-level stage of the model (bank, pool, projections, highway, gru, ...):
     eager-stage times from forward pre/post hooks on the top-level children, and ONNX Runtime node times from its
     own profiler (a separate, profiling session with the runner's options), node names mapped to stages by their
     module scope ("/bank/convs.0/conv/Conv" -> bank).
  4. a table on the terminal and a JSON file with the environment, the settings and every number.

    python bench/bench_runtimes.py                       # cbhg + cbhg-lite, 1 and 2 threads, T=200
    python bench/bench_runtimes.py --quick               # smoke test: a few iterations, nothing written unless --out
    python bench/bench_runtimes.py --models cbhg --threads 1 --time 1000 --iterations 100

All ratios are same-run ratios: both runtimes and the sgemm rate are measured back to back in one process.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

# _common first: it puts this checkout's edgeseq ahead of an installed one
from _common import ForeignLoad, results_path, write_report

import numpy as np
import torch

import edgeseq
from edgeseq.environment import fingerprint
from edgeseq.formats.onnx import OnnxRunner
from edgeseq.formats.torch import TorchRunner
from edgeseq.latency import measure
from edgeseq.stage_profile import OTHER, eager_stage_times, ort_stage_times, stage_names, summarize_stages

SGEMM_N = 1024


# ---- sgemm rate ---------------------------------------------------------------------------------------------------


def sgemm_gflops(threads: int, n: int = SGEMM_N, repeats: int = 10) -> float:
    """Best-of-`repeats` fp32 n x n x n torch.mm rate at `threads` torch threads, in GFLOP/s."""
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen)
    b = torch.randn(n, n, generator=gen)
    out = torch.empty(n, n)
    for _ in range(2):
        torch.mm(a, b, out=out)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


def matmul_onnx(workdir: Path, n: int = SGEMM_N) -> Path:
    """A one-node fp32 MatMul graph: lets ONNX Runtime's own GEMM (MLAS) report its rate on this CPU."""
    import onnx
    from onnx import TensorProto, helper

    path = workdir / f"matmul{n}.onnx"
    if not path.exists():
        values = [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in ("a", "b", "c")]
        graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "sgemm", values[:2], values[2:])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.save(model, str(path))
    return path


def ort_sgemm_gflops(threads: int, workdir: Path, n: int = SGEMM_N, repeats: int = 10) -> float:
    """Best-of-`repeats` rate of the MatMul graph in an OnnxRunner session (its options, its thread count).

    The session is driven directly (runner.session.run) so that the Runner's feed validation, which reads every
    input value, is not timed as GEMM work.
    """
    rng = np.random.default_rng(0)
    feed = {"a": rng.standard_normal((n, n), dtype=np.float32), "b": rng.standard_normal((n, n), dtype=np.float32)}
    with OnnxRunner(matmul_onnx(workdir, n), device="cpu", threads=threads) as runner:
        for _ in range(2):
            runner.session.run(None, feed)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            runner.session.run(None, feed)
            best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


def gemm_rates(threads: int, workdir: Path, repeats: int, pause: float) -> dict:
    rates = {"torch": sgemm_gflops(threads, repeats=repeats)}
    time.sleep(pause)
    rates["onnxruntime"] = ort_sgemm_gflops(threads, workdir, repeats=repeats)
    return rates


# ---- one model x thread count -------------------------------------------------------------------------------------


def bench_one(spec, artifact, threads: int, args, workdir: Path) -> dict:
    feed = spec.example_inputs(batch=args.batch, time=args.time, source="speech")
    flops_by_stage = spec.flops_by_stage(time=args.time, batch=args.batch)
    flops = sum(flops_by_stage.values())
    pause = 0.0 if args.quick else 0.3  # let the other runtime's spinning worker threads go idle

    with ForeignLoad() as load:
        sgemm_before = gemm_rates(threads, workdir, args.sgemm_repeats, pause)
        time.sleep(pause)
        with TorchRunner(spec, threads=threads) as runner:
            eager = measure(runner, feed, warmup=args.warmup, iterations=args.iterations, artifact="",
                            time_axis=args.time)
        time.sleep(pause)
        with OnnxRunner(artifact.path, device="cpu", threads=threads) as runner:
            ort = measure(runner, feed, warmup=args.warmup, iterations=args.iterations, artifact=artifact.path,
                          time_axis=args.time)
        time.sleep(pause)
        sgemm_after = gemm_rates(threads, workdir, args.sgemm_repeats, pause)

        profile_iters = args.profile_iterations
        time.sleep(pause)
        with TorchRunner(spec, threads=threads) as runner:
            stages = stage_names(runner.module)
            eager_raw = eager_stage_times(runner, feed, stages, args.warmup, profile_iters)
        time.sleep(pause)
        ort_raw = ort_stage_times(artifact.path, feed, threads, stages, args.warmup, profile_iters, workdir)

    torch_rate = max(sgemm_before["torch"], sgemm_after["torch"])
    ort_rate = max(sgemm_before["onnxruntime"], sgemm_after["onnxruntime"])
    rate = max(torch_rate, ort_rate)  # the best fp32 GEMM rate this machine showed at this thread count
    floor_ms = flops / (rate * 1e9) * 1e3
    missing = sorted(set(flops_by_stage) - set(stages))
    eager_stages = summarize_stages(eager_raw, stages, flops_by_stage)
    ort_stages = summarize_stages(ort_raw, stages, flops_by_stage)
    eager_sum = sum(s["median_ms"] for s in eager_stages.values())
    ort_sum = sum(s["median_ms"] for s in ort_stages.values())
    return {
        "model": spec.name,
        "threads": threads,
        "batch": args.batch,
        "time": args.time,
        "parameters": spec.parameter_count,
        "flops": flops,
        "flops_by_stage": flops_by_stage,
        "sgemm": {
            "n": SGEMM_N,
            "before_gflops": sgemm_before,
            "after_gflops": sgemm_after,
            "torch_gflops": torch_rate,
            "onnxruntime_gflops": ort_rate,
            "gflops": rate,
        },
        "flop_floor_ms": floor_ms,
        "flop_floor_torch_sgemm_ms": flops / (torch_rate * 1e9) * 1e3,
        "eager": eager.to_dict(),
        "onnxruntime": ort.to_dict(),
        "onnxruntime_x_faster_than_eager": eager.p50_ms / ort.p50_ms,
        "eager_x_floor": eager.p50_ms / floor_ms,
        "onnxruntime_x_floor": ort.p50_ms / floor_ms,
        "eager_x_torch_sgemm_floor": eager.p50_ms / (flops / (torch_rate * 1e9) * 1e3),
        "onnxruntime_x_torch_sgemm_floor": ort.p50_ms / (flops / (torch_rate * 1e9) * 1e3),
        "stages": {
            "names": stages,
            "flops_stages_without_module": missing,
            "iterations": profile_iters,
            "eager": eager_stages,
            "onnxruntime": ort_stages,
            "onnxruntime_unmapped_nodes": ort_raw["other_nodes"],
            "onnxruntime_trace": ort_raw["trace"],
        },
        "sanity": {
            "eager_stage_sum_ms": eager_sum,
            "eager_stage_sum_over_p50": eager_sum / eager.p50_ms,
            "eager_hooked_total_p50_ms": statistics.median(eager_raw["total_ms"]),
            "onnxruntime_node_sum_ms": ort_sum,
            "onnxruntime_node_sum_over_p50": ort_sum / ort.p50_ms,
            "onnxruntime_profiled_model_run_p50_ms": statistics.median(ort_raw["model_run_ms"]),
            "onnxruntime_profiled_run_over_p50": statistics.median(ort_raw["model_run_ms"]) / ort.p50_ms,
            "foreign_cpu_share": load.share,
            "sgemm_drift_pct": {
                k: 100.0 * abs(sgemm_after[k] - sgemm_before[k]) / max(sgemm_after[k], sgemm_before[k])
                for k in sgemm_before
            },
        },
    }


# ---- output -------------------------------------------------------------------------------------------------------


def render(results: list[dict], settings: dict, env: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=120)
    console.print(
        f"[bold]CPU runtimes[/bold]  {env['cpu']} ({env['cpu_count']} CPUs), torch {env['packages'].get('torch')}, "
        f"onnxruntime {env['packages'].get('onnxruntime')}; batch {settings['batch']}, T={settings['time']}, "
        f"{settings['iterations']} iterations after {settings['warmup']} warm-up, same-run ratios"
    )
    table = Table(title="Latency p50 ms (end to end through edgeseq runners) vs the FLOP floor "
                        "(model FLOPs / best fp32 sgemm GFLOP/s of torch and ORT at that thread count)")
    for col in ("model", "thr", "GFLOP", "sgemm torch/ORT", "floor ms", "eager p50", "ORT p50",
                "ORT x faster", "eager x floor", "ORT x floor", "other load"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in results:
        table.add_row(
            r["model"], str(r["threads"]), f"{r['flops'] / 1e9:.3f}",
            f"{r['sgemm']['torch_gflops']:.0f}/{r['sgemm']['onnxruntime_gflops']:.0f}",
            f"{r['flop_floor_ms']:.2f}", f"{r['eager']['p50_ms']:.2f}", f"{r['onnxruntime']['p50_ms']:.2f}",
            f"{r['onnxruntime_x_faster_than_eager']:.2f}x", f"{r['eager_x_floor']:.1f}x",
            f"{r['onnxruntime_x_floor']:.1f}x", _pct(r["sanity"]["foreign_cpu_share"]),
        )
    console.print(table)

    stages = Table(title="Where the time goes: median ms per inference (share of the stage sum); FLOPs share")
    for col in ("model", "thr", "stage", "FLOPs %", "eager-stage ms", "eager %", "ORT ms", "ORT %"):
        stages.add_column(col, justify="left" if col in ("model", "stage") else "right")
    for r in results:
        st = r["stages"]
        for i, name in enumerate([*st["names"], OTHER]):
            e, o = st["eager"][name], st["onnxruntime"][name]
            stages.add_row(
                r["model"] if i == 0 else "", str(r["threads"]) if i == 0 else "", name,
                f"{e['flops_share_pct']:.1f}", f"{e['median_ms']:.3f}", f"{e['share_pct']:.1f}",
                f"{o['median_ms']:.3f}", f"{o['share_pct']:.1f}",
            )
        s = r["sanity"]
        stages.add_row(
            "", "", "[italic]sum / p50[/italic]", "100.0",
            f"{s['eager_stage_sum_ms']:.3f}", f"{100 * s['eager_stage_sum_over_p50']:.0f}% of p50",
            f"{s['onnxruntime_node_sum_ms']:.3f}", f"{100 * s['onnxruntime_node_sum_over_p50']:.0f}% of p50",
            end_section=True,
        )
    console.print(stages)
    console.print(
        "eager 'other' = runner.infer time outside the stage modules (forward() glue + feed validation and "
        "numpy<->tensor); ORT 'other' = nodes outside any stage scope (top-level Transpose/Add). Stage times come "
        "from separate hooked / profiling passes, not from the p50 runs."
    )


def _pct(share) -> str:
    return "n/a" if share is None else f"{100 * share:.0f}%"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["cbhg", "cbhg-lite"], help="registered model names")
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="thread counts (torch, ORT intra-op)")
    p.add_argument("--time", type=int, default=200, help="sequence length T in frames (default 200)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iterations", type=int, default=500, help="timed iterations per runtime (default 500)")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--profile-iterations", type=int, default=None,
                   help="iterations of each per-stage pass (default: min(--iterations, 300))")
    p.add_argument("--sgemm-repeats", type=int, default=10, help="matmuls timed per sgemm measurement (best kept)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 10 iterations, 2 warm-up; writes JSON only with --out")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default bench/results/cpu-runtimes-<machine>-<cpu features>.json; --quick "
                        "writes none)")
    args = p.parse_args(argv)
    if args.quick:
        args.iterations, args.warmup, args.sgemm_repeats = 10, 2, 3
        args.profile_iterations = args.profile_iterations or 10
    args.profile_iterations = args.profile_iterations or min(args.iterations, 300)
    if min(args.threads) < 1 or args.iterations < 1 or args.time < 1 or args.batch < 1:
        p.error("threads, iterations, time and batch must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    out = args.out if args.out is not None else (None if args.quick else results_path("cpu-runtimes"))
    env = fingerprint()
    settings = {
        "models": args.models, "threads": args.threads, "batch": args.batch, "time": args.time,
        "iterations": args.iterations, "warmup": args.warmup,
        "profile_iterations": args.profile_iterations, "sgemm_n": SGEMM_N,
        "sgemm_repeats": args.sgemm_repeats, "input_source": "speech", "quick": args.quick,
        "onnxruntime_session": "CPUExecutionProvider, intra_op = threads, inter_op = 1, default graph optimization",
    }
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="edgeseq-bench-") as tmp:
        workdir = Path(tmp)
        for name in args.models:
            spec = edgeseq.get_model(name)
            artifact = edgeseq.export(name, "onnx", out_dir=workdir)
            for threads in args.threads:
                print(f"  {name} x {threads} thread(s) ...", file=sys.stderr, flush=True)
                r = bench_one(spec, artifact, threads, args, workdir)
                r["artifact"] = {k: v for k, v in artifact.to_dict().items() if k != "path"}
                results.append(r)
    render(results, settings, env)
    write_report(out, "cpu-runtimes", started, env, settings, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
