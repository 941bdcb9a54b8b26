"""Probe the persistent Triton BiGRU on one CUDA GPU: parity with nn.GRU and device time against cuDNN, per config.

    python bench/triton_gru_probe.py       # -> bench/results/triton-gru-probe-<card>.json; 30-60 s on an H100 / H200

For each shape (batch, T, hidden) and storage dtype (fp32, fp16) it runs cuDNN's nn.GRU and every kernel config
below, each replayed in a CUDA graph after warm-up and timed with CUDA events (median of --iterations replays):
`kernel` is the recurrence launch alone (gi precomputed), `forward` is TritonBiGRU.forward (the cuBLAS input
matmul + the kernel), `cudnn` is nn.GRU. rel L2 is against nn.GRU in fp32 on the CPU with the same fp32 weights
and inputs (parity bars: fp32 1e-5, fp16 1e-3, as in edgeseq.parity). A config that fails to compile or launch
is printed and recorded, and the probe goes on. Last, the whole fused CBHG (cuDNN GRU vs Triton GRU with the
fastest passing config) is timed in a CUDA graph at batch 1, T=200: the target is <= 0.4 ms for cbhg.

    python bench/triton_gru_probe.py --quick --out /tmp/triton_gru_quick.json   # well under 60 s

--quick times only B=1 T=200 at hidden 128 and 64, fp16 and fp32: cuDNN, the previous best Triton configs and the
hand-written CUDA kernel at both splits, 'cuda-rows-s4' / 'cuda-rows-s2' (quick_configs), then the fused cbhg
(hidden 128) in a CUDA graph with cuDNN, with the fastest passing config, and torch.compiled (GRU behind a graph
break) with that config and with the best 'dot' one; add --skip-cbhg for the kernel table alone.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import traceback
from dataclasses import asdict

# _common first: it puts this checkout's edgeseq ahead of an installed one
from _common import card_tag, event_times_ms, graph_p50_ms, print_table, require_gpu, results_path, write_json

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from edgeseq.kernels.triton_gru import GruKernelConfig, TritonBiGRU, bigru_recurrence

SHAPES = ((1, 200, 128), (16, 1000, 128), (1, 200, 64))
QUICK_SHAPES = ((1, 200, 128), (1, 200, 64))
DEVICE = "cuda"
BARS = {"fp32": 1e-5, "fp16": 1e-3}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def configs(precision: str, hidden: int) -> list[tuple[str, GruKernelConfig]]:
    """Kernel configs worth timing. Names: kind, dtype W_hh is held in on chip, warps (dot: + batch tile)."""
    vec = [(f"vec-w32-nw{n}", GruKernelConfig("vec", n, "fp32")) for n in (4, 8, 16)] + cuda_configs(hidden)
    if precision == "fp32":
        out = vec + [("vec-w32-nw32", GruKernelConfig("vec", 32, "fp32"))]
        if hidden == 128:  # tf32 / fp16 weights: expected to miss the fp32 bar; timed to know what it would buy
            out += [("dot-w32tf32-nw8-b16", GruKernelConfig("dot", 8, "fp32", 16, "tf32")),
                    ("dot-w16-nw8-b16", GruKernelConfig("dot", 8, "fp16", 16))]
        return out
    out = vec + [(f"vec-w16-nw{n}", GruKernelConfig("vec", n, "fp16")) for n in (8, 16)]
    out += [(f"dot-w16-nw{n}-b16", GruKernelConfig("dot", n, "fp16", 16)) for n in (4, 8, 16)]
    return out + dot_t_configs()


def dot_t_configs() -> list[tuple[str, GruKernelConfig]]:
    """The transposed kernel (gh^T = W_hh h^T: W_hh is the A operand, M = hidden rows fits wgmma), fp16 W_hh."""
    return [(f"dotT-w16-nw{n}-b16", GruKernelConfig("dotT", n, "fp16", 16)) for n in (4, 8)]


def cuda_configs(hidden: int) -> list[tuple[str, GruKernelConfig]]:
    """The hand-written CUDA kernel (edgeseq/kernels/cuda_gru.cu, NVRTC): W_hh in fp32 registers, any I/O dtype."""
    if hidden % 16 or hidden > 128:
        return []
    return [(f"cuda-rows-s{split}", GruKernelConfig("cuda", split=split)) for split in (4, 2)]


def quick_configs(precision: str, hidden: int) -> list[tuple[str, GruKernelConfig]]:
    """--quick: the CUDA kernel against the previous best Triton configs: fp16 'dot' nw4 (best at hidden 128) and
    nw8 (best at 64), fp32 'vec' nw4 ('dotT' measured 0.96-0.97x cuDNN: left out)."""
    if precision == "fp32":
        return [("vec-w32-nw4", GruKernelConfig("vec", 4, "fp32"))] + cuda_configs(hidden)
    return [(f"dot-w16-nw{n}-b16", GruKernelConfig("dot", n, "fp16", 16)) for n in (4, 8)] + cuda_configs(hidden)


def eager_ms(fn, iterations: int) -> float:
    """Median device time of fn() launched directly (the fallback when graph capture fails)."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    return float(np.median(event_times_ms(fn, iterations)))


def timed(fn, iterations: int, row: dict, key: str) -> float:
    """Graph replay time; if capturing fails, record why and time direct launches instead (key + '_eager')."""
    try:
        return graph_p50_ms(fn, iterations)
    except Exception as exc:  # noqa: BLE001
        row.setdefault("graph_errors", []).append(f"{key}: {short_error(exc)}")
        torch.cuda.synchronize()
        row[key + "_timing"] = "eager (graph capture failed)"
        return eager_ms(fn, iterations)


def rel_l2(got: torch.Tensor, ref: torch.Tensor) -> float:
    got, ref = got.detach().double().cpu(), ref.detach().double().cpu()
    return float(torch.linalg.vector_norm(got - ref) / torch.linalg.vector_norm(ref))


def short_error(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    head = f"{type(exc).__name__}: {lines[0] if lines else ''}"
    tail = lines[-1] if len(lines) > 1 else ""
    return (head + (" ... " + tail if tail else ""))[:400]


def probe_shape(batch: int, steps: int, hidden: int, iterations: int, rows: list, quick: bool = False) -> None:
    torch.manual_seed(batch * 7 + steps + hidden)
    gru32 = nn.GRU(hidden, hidden, batch_first=True, bidirectional=True).eval()
    x32 = torch.randn(batch, steps, hidden)
    with torch.inference_mode():
        ref = gru32(x32)[0]  # CPU fp32: the reference
    base = TritonBiGRU(gru32)
    for precision, dtype in DTYPES.items():
        x = x32.to(DEVICE, dtype)
        try:
            cudnn = nn.GRU(hidden, hidden, batch_first=True, bidirectional=True).eval()
            cudnn.load_state_dict(gru32.state_dict())
            cudnn = cudnn.to(DEVICE, dtype)
            with torch.inference_mode(), torch.backends.cudnn.flags(enabled=True, benchmark=True,
                                                                    allow_tf32=precision != "fp32"):
                cudnn_err = rel_l2(cudnn(x)[0], ref)
                cudnn_ms = graph_p50_ms(lambda: cudnn(x), iterations)
        except Exception as exc:  # noqa: BLE001 - a probe records and goes on
            cudnn_err, cudnn_ms = float("nan"), float("nan")
            print(f"  cuDNN {precision} failed: {short_error(exc)}", flush=True)
        print(f"B={batch} T={steps} H={hidden} {precision}: cuDNN nn.GRU graph {cudnn_ms:.4f} ms, "
              f"rel L2 {cudnn_err:.1e}", flush=True)
        rows.append({"batch": batch, "time": steps, "hidden": hidden, "precision": precision, "config": "cudnn",
                     "kernel_ms": None, "forward_ms": cudnn_ms, "rel_l2": cudnn_err,
                     "passed": bool(cudnn_err <= BARS[precision]), "error": None, "compile_s": None})
        for name, cfg in (quick_configs if quick else configs)(precision, hidden):
            row = {"batch": batch, "time": steps, "hidden": hidden, "precision": precision, "config": name,
                   "settings": asdict(cfg), "kernel_ms": None, "forward_ms": None, "rel_l2": None,
                   "passed": False, "error": None, "compile_s": None}
            try:
                module = base.with_config(cfg).to(DEVICE, dtype)
                with torch.inference_mode():
                    started = time.perf_counter()
                    out = module(x)
                    torch.cuda.synchronize()
                    row["compile_s"] = round(time.perf_counter() - started, 2)
                    row["rel_l2"] = rel_l2(out, ref)
                    row["passed"] = bool(row["rel_l2"] <= BARS[precision])
                    gi = F.linear(x, module.w_ih, module.b_ih)
                    row["kernel_ms"] = timed(lambda: bigru_recurrence(gi, module.w_hh_t, module.b_hh, cfg),
                                             iterations, row, "kernel")
                    row["forward_ms"] = timed(lambda: module(x), iterations, row, "forward")
                    row["us_per_step"] = row["kernel_ms"] * 1e3 / steps
            except Exception as exc:  # noqa: BLE001 - compile / launch errors are results here
                row["error"] = short_error(exc)
                torch.cuda.synchronize()
            row["x_cudnn"] = (cudnn_ms / row["forward_ms"]) if row["forward_ms"] else None
            rows.append(row)
            if row["error"]:
                print(f"  {name:22s} ERROR {row['error']}", flush=True)
            else:
                print(f"  {name:22s} {'PASS' if row['passed'] else 'FAIL'} rel L2 {row['rel_l2']:.1e}  kernel "
                      f"{row['kernel_ms']:.4f} ms ({row['us_per_step']:.2f} us/step)  forward {row['forward_ms']:.4f} ms"
                      f"  x{row['x_cudnn']:.2f} vs cuDNN  (first call {row['compile_s']} s)", flush=True)
                for line in row.get("graph_errors", []):
                    print(f"    graph capture failed, timed direct launches: {line}", flush=True)


def best_config(rows: list, hidden: int, precision: str, kind: str | None = None
                ) -> tuple[str, GruKernelConfig] | None:
    ok = [r for r in rows if r["hidden"] == hidden and r["precision"] == precision and r["batch"] == 1
          and r["config"] != "cudnn" and r["passed"] and r["forward_ms"]
          and (kind is None or r["settings"]["kind"] == kind)]
    if not ok:
        return None
    r = min(ok, key=lambda r: r["forward_ms"])
    return r["config"], GruKernelConfig(**r["settings"])


def probe_cbhg(rows: list, iterations: int, models=("cbhg", "cbhg-lite"), precisions=tuple(DTYPES),
               compiled: bool = False) -> list:
    """Whole fused CBHG at batch 1, T=200 in a CUDA graph: cuDNN GRU vs the Triton GRU (best passing config).
    compiled: also torch.compile (GRU behind a graph break, compile_probe's c-compile-break) with the best config
    and, if that is not a 'dot' one, the best 'dot' one, so old and new kernel meet in the same run."""
    from edgeseq.formats.torch import TorchCudaGraphRunner, TorchRunner
    from edgeseq.models import get_model
    from edgeseq.models.fuse import fuse_for_inference
    from edgeseq.parity import DEFAULT_TOLERANCES, compare

    out = []
    for model in models:
        spec = get_model(model)
        feed = spec.example_inputs(batch=1, time=200, source="speech", seed=201)
        with TorchRunner(spec, device="cpu") as reference:
            expected = reference.infer(feed)
        name = spec.output_names[0]
        hidden = spec.build().cfg.gru_hidden
        for precision in precisions:
            best = best_config(rows, hidden, precision)
            variants = [("fused-cudnn", None, False)] + ([(f"fused-triton[{best[0]}]", best[1], False)] if best else [])
            if compiled and best:
                best_dot = best_config(rows, hidden, precision, kind="dot")
                picks = [best] + ([best_dot] if best_dot and best_dot[0] != best[0] else [])
                variants += [(f"compiled-triton[{n}]", c, True) for n, c in picks]
            for label, cfg, compile_it in variants:
                row = {"model": model, "precision": precision, "variant": label, "device_p50_ms": None,
                       "rel_l2": None, "passed": False, "error": None}
                try:
                    gru = "torch" if cfg is None else "triton"
                    module = fuse_for_inference(spec.build(), gru=gru, gru_config=cfg)
                    if compile_it:  # a fresh compile per config; the GRU runs eagerly behind a graph break
                        import torch._dynamo

                        torch._dynamo.reset()
                    with TorchCudaGraphRunner(spec, module=module, precision=precision,
                                              compile="default" if compile_it else None) as runner:
                        err = compare(name, expected[name], runner.infer(feed)[name],
                                      DEFAULT_TOLERANCES.get(precision, name))
                        times = runner.device_times_ms(feed, warmup=10, iterations=iterations)
                    row.update(device_p50_ms=float(np.median(times)), rel_l2=err.rel_l2, passed=err.passed)
                except Exception as exc:  # noqa: BLE001
                    row["error"] = short_error(exc)
                out.append(row)
                if row["error"]:
                    print(f"{model:10s} {precision} {label:32s} ERROR {row['error']}", flush=True)
                else:
                    print(f"{model:10s} {precision} {label:32s} {'PASS' if row['passed'] else 'FAIL'} rel L2 "
                          f"{row['rel_l2']:.1e}  graph p50 {row['device_p50_ms']:.4f} ms", flush=True)
    return out


def print_tables(env: dict, rows: list[dict], cbhg: list[dict]) -> None:
    """The kernel table (one row per shape, dtype and config), then the whole-model rows."""
    table = []
    for r in rows:
        shape = f"{r['batch']} x {r['time']} x {r['hidden']}"
        if r["error"]:
            table.append((shape, r["precision"], r["config"], "ERROR", r["error"][:80]))
            continue
        table.append((shape, r["precision"], r["config"], "PASS" if r["passed"] else "FAIL", f"{r['rel_l2']:.1e}",
                      "-" if r["kernel_ms"] is None else f"{r['kernel_ms']:.4f}",
                      "-" if r.get("us_per_step") is None else f"{r['us_per_step']:.2f}", f"{r['forward_ms']:.4f}",
                      f"{r['x_cudnn']:.2f}x" if r.get("x_cudnn") else "-",
                      "direct launches" if r.get("graph_errors") else ""))
    print_table(("B x T x H", "prec", "config", "parity", "rel L2", "kernel ms", "us/step", "forward ms", "x cuDNN",
                 "note"), table,
                title=f"{env['gpu']}  torch {env['torch']}  triton {env['triton']}  CUDA {env['cuda']}")
    if cbhg:
        print_table(("model", "prec", "variant", "parity", "rel L2", "graph p50 ms"),
                    [(r["model"], r["precision"], r["variant"], "ERROR", r["error"][:80]) if r["error"] else
                     (r["model"], r["precision"], r["variant"], "PASS" if r["passed"] else "FAIL",
                      f"{r['rel_l2']:.1e}", f"{r['device_p50_ms']:.4f}") for r in cbhg])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None,
                        help="JSON path (default bench/results/triton-gru-probe-<card>.json; with --quick "
                             "triton-gru-quick-<card>.json)")
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--skip-cbhg", action="store_true", help="kernel table only, no whole-model timing")
    parser.add_argument("--quick", action="store_true",
                        help="B=1 T=200 H=128/64: cuDNN, the best Triton configs and the CUDA kernel; then cbhg")
    args = parser.parse_args()
    started = time.time()
    no_gpu = require_gpu("triton_gru_probe.py")
    if no_gpu:
        print(no_gpu, file=sys.stderr)
        return 2
    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda}
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError as exc:
        print(f"error: triton is not importable ({exc})", file=sys.stderr)
        return 2
    env["gpu"] = torch.cuda.get_device_name(0)
    env["capability"] = list(torch.cuda.get_device_capability(0))
    print(" ".join(f"{k}={v}" for k, v in env.items()), flush=True)
    rows: list = []
    for batch, steps, hidden in QUICK_SHAPES if args.quick else SHAPES:
        try:
            probe_shape(batch, steps, hidden, args.iterations, rows, quick=args.quick)
        except Exception:  # noqa: BLE001 - keep what we have
            traceback.print_exc()
    cbhg = []
    if not args.skip_cbhg:
        try:
            cbhg = (probe_cbhg(rows, max(args.iterations, 100), models=("cbhg",), precisions=("fp16", "fp32"),
                               compiled=True)
                    if args.quick else probe_cbhg(rows, max(args.iterations, 100)))
        except Exception:  # noqa: BLE001
            traceback.print_exc()
    result = {"environment": env, "quick": args.quick, "seconds": round(time.time() - started, 1), "rows": rows,
              "cbhg": cbhg}
    out = write_json(args.out or results_path("triton-gru-quick" if args.quick else "triton-gru-probe", card_tag()),
                     result, say=False)
    print_tables(env, rows, cbhg)
    print(f"wrote {out} in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
