"""CUDA parity and latency for the CBHG family on one GPU, in one prepared run (no install step needed).

    python bench/gpu_check.py [--out bench/results/gpu-<card>.json] [--models cbhg cbhg-lite attention-cbhg]

Every CUDA runtime available is compared with the PyTorch fp32 original run on the CPU, on real-speech inputs,
at batch 1 and 16 and T = 200 and 1000. Latency is device time from CUDA events after warm-up (inputs already on
the GPU), plus the end-to-end time an app pays (host -> GPU -> host). The table is printed last. With triton
importable, the fused graphs also run with the BiGRU as one persistent Triton kernel (`-triton` rows, the default
config per dtype and hidden size). `-cuda` rows run it as the hand-written CUDA kernel (edgeseq/kernels/cuda_gru.cu,
compiled by NVRTC, which CUDA builds of torch carry; BiGRU kernel `cuda-rows-s2`), at every shape. `-auto` rows
(gru="auto", batch 1, T=200 only: the run is the same as one of the others, so one shape keeps it short) check
AutoBiGRU's pick: the CUDA kernel where it runs, else Triton where it measured faster than cuDNN, else cuDNN. The
`BiGRU kernel` column says which ran: cudnn, triton[<config>] or cuda-rows-s<split>. Last, `-compiled` rows: the
fused model with gru="auto" in TorchCudaGraphRunner(compile="default") (torch.compile, the GRU behind a graph
break, compiled in the warm-up before each capture), fp16 at 1 x 200 and 16 x 1000, fp32 at 1 x 200; they start
only while --compile-budget-s allows. A `-compiled` or `-cuda` row that fails is reported and the run goes on.
`first call` is the first infer at a shape (compile + capture). The best passing row per model and shape is
printed at the end ("best: ...").
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# _common first: it puts this checkout's edgeseq ahead of an installed one
from _common import card_tag, graph_p50_ms, print_table, require_gpu, results_path, write_json

import numpy as np
import torch

from edgeseq._lazy import available
from edgeseq.environment import fingerprint
from edgeseq.formats.torch import TorchCudaGraphRunner, TorchRunner
from edgeseq.kernels.triton_gru import AutoBiGRU, TritonBiGRU  # imports no triton
from edgeseq.latency import time_locally
from edgeseq.models import get_model
from edgeseq.models.fuse import fuse_for_inference
from edgeseq.parity import DEFAULT_TOLERANCES, compare

SHAPES = ((1, 200), (16, 200), (1, 1000), (16, 1000))
AUTO_SHAPES = ((1, 200),)
COMPILED_SHAPES = {"fp16": ((1, 200), (16, 1000)), "fp32": ((1, 200),)}


def compiled_runner(spec, precision: str) -> TorchCudaGraphRunner:
    """The fastest measured path: fused, gru="auto", torch.compile(mode="default") in the runner's warm-up. Dynamo's
    cache is cleared first: every runner compiles the same CBHG.forward, and its recompile limit (8) would
    otherwise end in an error after a few models and shapes."""
    import torch._dynamo

    torch._dynamo.reset()
    module = fuse_for_inference(spec.build(), gru="auto")
    return TorchCudaGraphRunner(spec, module=module, precision=precision, compile="default")


def cuda_kernel_runner(spec, precision: str) -> TorchCudaGraphRunner:
    """The fused graph with the BiGRU as the hand-written CUDA kernel (edgeseq/kernels/cuda_gru.cu, NVRTC)."""
    module = fuse_for_inference(spec.build(), gru="cuda")
    return TorchCudaGraphRunner(spec, module=module, precision=precision)


def runtimes(spec):
    """(label, precision, factory) for every CUDA runtime this machine has, plus the shapes to run it at where
    fewer than SHAPES."""
    out = [
        ("torch-cuda", "fp32", lambda: TorchRunner(spec, device="cuda")),
        ("torch-cuda", "fp16", lambda: TorchRunner(spec, device="cuda", precision="fp16")),
        ("torch-cuda-graph", "fp32", lambda: TorchCudaGraphRunner(spec)),
        ("torch-cuda-graph", "fp16", lambda: TorchCudaGraphRunner(spec, precision="fp16")),
        # batch norms folded and the bank merged into one conv: fewer launches per graph
        ("torch-cuda-graph-fused", "fp32", lambda: TorchCudaGraphRunner(spec, module=fuse_for_inference(spec.build()))),
        ("torch-cuda-graph-fused", "fp16",
         lambda: TorchCudaGraphRunner(spec, module=fuse_for_inference(spec.build()), precision="fp16")),
    ]
    if available("triton"):  # the BiGRU as one persistent kernel launch (edgeseq.kernels.triton_gru)
        out += [
            ("torch-cuda-graph-fused-triton", "fp32",
             lambda: TorchCudaGraphRunner(spec, module=fuse_for_inference(spec.build(), gru="triton"))),
            ("torch-cuda-graph-fused-triton", "fp16",
             lambda: TorchCudaGraphRunner(spec, module=fuse_for_inference(spec.build(), gru="triton"),
                                          precision="fp16")),
            ("torch-cuda-graph-fused-auto", "fp32",
             lambda: TorchCudaGraphRunner(spec, module=fuse_for_inference(spec.build(), gru="auto")), AUTO_SHAPES),
            ("torch-cuda-graph-fused-auto", "fp16",
             lambda: TorchCudaGraphRunner(spec, module=fuse_for_inference(spec.build(), gru="auto"),
                                          precision="fp16"), AUTO_SHAPES),
        ]
    # the hand-written CUDA kernel (needs NVRTC, which CUDA builds of torch carry)
    out += [("torch-cuda-graph-fused-cuda", p, lambda p=p: cuda_kernel_runner(spec, p)) for p in ("fp32", "fp16")]
    # compiled around whichever GRU "auto" picks (a graph break at it)
    out += [("torch-cuda-graph-fused-compiled", p, lambda p=p: compiled_runner(spec, p), COMPILED_SHAPES[p])
            for p in ("fp16", "fp32")]
    return out


def gru_kernel(runner) -> str:
    """Which kernel ran the BiGRU in the last call: 'cudnn', 'triton[<config label>]' or 'cuda-rows-s<split>'."""
    gru = runner.module.gru
    if isinstance(gru, AutoBiGRU):
        return gru.choice or "-"
    if isinstance(gru, TritonBiGRU):
        if gru.last_config is None:
            return "-"
        label = gru.last_config.label
        return label if gru.last_config.kind == "cuda" else f"triton[{label}]"
    return "cudnn"


def gru_share_ms(runner, feed) -> float:
    """Device time of the BiGRU alone, captured in its own CUDA graph at this shape: where the time goes."""
    gru = runner.module.gru
    batch, time_ = next(iter(feed.values())).shape[:2]
    input_size = gru.input_size if hasattr(gru, "input_size") else gru.rnn.input_size  # TritonBiGRU or BiGRU
    x = torch.randn(batch, time_, input_size, device="cuda", dtype=runner._dtype)
    flags = torch.backends.cudnn.flags(enabled=True, benchmark=True, allow_tf32=runner.precision != "fp32")
    with torch.inference_mode(), flags:
        return graph_p50_ms(lambda: gru(x), 50)


def ort_cuda_status() -> str:
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime not installed"
    have = [p for p in ort.get_available_providers() if p in ("CUDAExecutionProvider", "TensorrtExecutionProvider")]
    return ", ".join(have) if have else f"onnxruntime {ort.__version__} has only {ort.get_available_providers()}"


def triton_version() -> str | None:
    if not available("triton"):
        return None
    import triton

    return triton.__version__


def print_rows(rows: list[dict]) -> None:
    print_table(("model", "runtime", "prec", "batch x T", "parity", "rel L2", "device p50 ms", "x eager", "e2e p50 ms",
                 "BiGRU alone ms", "BiGRU kernel"),
                [(r["model"], r["runtime"], r["precision"], f"{r['batch']} x {r['time']}",
                  "PASS" if r["passed"] else "FAIL", f"{r['rel_l2']:.1e}", f"{r['device_p50_ms']:.3f}",
                  f"{r['x_eager_fp32']:.2f}x", f"{r['e2e_p50_ms']:.3f}",
                  "-" if r["gru_graph_p50_ms"] is None else f"{r['gru_graph_p50_ms']:.3f}", r["gru_kernel"])
                 for r in rows])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["cbhg", "cbhg-lite", "attention-cbhg"])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--out", default=None, help="JSON path (default bench/results/gpu-<card>.json)")
    parser.add_argument("--compile-budget-s", type=float, default=150.0,
                        help="start no more -compiled runners once the run has taken this long")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip the -compiled rows")
    args = parser.parse_args()
    no_gpu = require_gpu("gpu_check.py")
    if no_gpu:
        print(no_gpu, file=sys.stderr)
        return 2
    gpu = torch.cuda.get_device_name(0)
    out_path = args.out or results_path("gpu", card_tag())
    torch.set_num_threads(min(16, os.cpu_count() or 1))
    started = time.time()
    rows, errors = [], []
    for name in args.models:
        spec = get_model(name)
        reference = TorchRunner(spec, device="cpu").load()
        feeds = {(b, t): spec.example_inputs(batch=b, time=t, source="speech", seed=b + t) for b, t in SHAPES}
        expected = {k: reference.infer(f) for k, f in feeds.items()}
        for label, precision, make, *only in runtimes(spec):
            shapes = only[0] if only else SHAPES
            if "-compiled" in label:
                spent = time.time() - started
                if not args.compile or spent > args.compile_budget_s:
                    why = "--no-compile" if not args.compile else f"{spent:.0f} s > --compile-budget-s"
                    print(f"{name:15s} {label:36s} {precision} skipped: {why}", flush=True)
                    continue
            try:
                with make() as runner:
                    for (b, t) in shapes:
                        feed = feeds[(b, t)]
                        t0 = time.perf_counter()
                        got = runner.infer(feed)
                        first_s = time.perf_counter() - t0
                        kernel = gru_kernel(runner)
                        out_name = spec.output_names[0]
                        err = compare(out_name, expected[(b, t)][out_name], got[out_name],
                                      DEFAULT_TOLERANCES.get(precision, out_name))
                        dev = np.asarray(runner.device_times_ms(feed, warmup=10, iterations=args.iterations))
                        e2e = time_locally(runner, feed, warmup=3, iterations=max(10, args.iterations // 5),
                                           budget_s=None)  # host in and out: measure() would give device time
                        gru_ms = gru_share_ms(runner, feed) if label.startswith("torch-cuda-graph") else None
                        rows.append({
                            "model": name, "runtime": label, "precision": precision, "batch": b, "time": t,
                            "passed": err.passed, "rel_l2": err.rel_l2, "max_abs": err.max_abs,
                            "cosine": err.cosine, "reason": err.reason,
                            "device_p50_ms": float(np.percentile(dev, 50)),
                            "device_p90_ms": float(np.percentile(dev, 90)),
                            "device_min_ms": float(dev.min()), "e2e_p50_ms": e2e.p50_ms, "gru_graph_p50_ms": gru_ms,
                            "gru_kernel": kernel, "first_call_s": round(first_s, 2),
                        })
                        print(f"{name:15s} {label:36s} {precision} b={b:<2d} T={t:<4d} "
                              f"{'PASS' if err.passed else 'FAIL'} relL2 {err.rel_l2:.1e}  "
                              f"device p50 {rows[-1]['device_p50_ms']:.3f} ms  e2e p50 {e2e.p50_ms:.3f} ms  "
                              f"BiGRU {kernel}  first call {first_s:.1f} s", flush=True)
            except Exception as exc:  # a compiled or CUDA-kernel row that fails is reported; the run goes on
                if not ("-compiled" in label or label.endswith("-cuda")):
                    raise
                errors.append({"model": name, "runtime": label, "precision": precision,
                               "error": f"{type(exc).__name__}: {exc}".splitlines()[0]})
                print(f"{name:15s} {label:36s} {precision} ERROR {errors[-1]['error']}", flush=True)
        reference.close()
    # speed-ups against eager fp32 on the same shape, same run
    eager = {(r["model"], r["batch"], r["time"]): r["device_p50_ms"] for r in rows
             if r["runtime"] == "torch-cuda" and r["precision"] == "fp32"}
    for r in rows:
        r["x_eager_fp32"] = eager[(r["model"], r["batch"], r["time"])] / r["device_p50_ms"]
    result = {
        "gpu": gpu,
        "capability": list(torch.cuda.get_device_capability(0)),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "ort_cuda": ort_cuda_status(),
        "triton": triton_version(),
        "environment": fingerprint(),
        "seconds": round(time.time() - started, 1),
        "rows": rows,
        "errors": errors,
    }
    write_json(out_path, result, say=False)
    print(f"\n{gpu} (torch {torch.__version__}, CUDA {torch.version.cuda}); ONNX Runtime CUDA: {result['ort_cuda']}")
    print_rows(rows)
    best = {}
    for r in rows:  # the fastest passing row per model and shape
        key = (r["model"], r["batch"], r["time"])
        if r["passed"] and (key not in best or r["device_p50_ms"] < best[key]["device_p50_ms"]):
            best[key] = r
    for (model, b, t), r in best.items():
        print(f"best: {model} {b} x {t}: {r['runtime']} {r['precision']} {r['device_p50_ms']:.3f} ms "
              f"({r['x_eager_fp32']:.2f}x eager fp32, rel L2 {r['rel_l2']:.1e}, BiGRU {r['gru_kernel']})")
    for e in errors:
        print(f"error: {e['model']} {e['runtime']} {e['precision']}: {e['error']}")
    print(f"wrote {out_path} in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
