"""Where the time goes: per top-level stage of a model (bank, pool, projections, highway, gru, ...), PyTorch eager
and ONNX Runtime side by side, with each stage's share of the FLOPs.

Eager stage times come from forward pre/post hooks on the model's top-level children; ONNX Runtime's from its own
profiler (a separate profiling session built with the runner's options), each node mapped to a stage by the module
scope the exporter wrote into its name ("/bank/convs.0/conv/Conv" -> bank). What is in no stage (top-level glue
such as the residual add and transposes, nodes an optimizer fused across scopes, and in eager the Runner's own
numpy <-> tensor work) is 'other'. `edgeseq profile ARTIFACT --stages` prints it; bench/bench_runtimes.py uses the
same functions.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time as _time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from ._checks import integer
from .errors import InputError, UnsupportedError

OTHER = "other"


def stage_names(module) -> list[str]:
    """The top-level children that do something (nn.Identity placeholders are left out)."""
    from torch import nn

    return [name for name, child in module.named_children() if not isinstance(child, nn.Identity)]


def eager_stage_times(runner, feed, stages: list[str], warmup: int, iterations: int) -> dict:
    """Per-iteration wall time (ms) of each top-level child of a loaded TorchRunner's module, plus the whole
    runner.infer call; 'other' is what infer spends outside the stages (forward()'s glue, the Runner's own work)."""
    from torch import nn

    runner.load()
    module = runner.module
    started: dict[tuple, float] = {}
    current: dict[str, float] = defaultdict(float)
    handles = []
    for name in stages:
        child = getattr(module, name)
        # a ModuleList / ModuleDict is never called itself: its members are, one by one (a user's conv bank)
        members = list(child.children()) if isinstance(child, (nn.ModuleList, nn.ModuleDict)) else [child]
        for k, member in enumerate(members):
            key = (name, k)

            def pre(_m, _inp, key=key):
                started[key] = _time.perf_counter()

            def post(_m, _inp, _out, key=key):
                current[key[0]] += _time.perf_counter() - started[key]

            handles.append(member.register_forward_pre_hook(pre))
            handles.append(member.register_forward_hook(post))
    per_iter: dict[str, list[float]] = defaultdict(list)
    totals: list[float] = []
    try:
        for _ in range(warmup):
            runner.infer(feed)
        for _ in range(iterations):
            current.clear()
            t0 = _time.perf_counter()
            runner.infer(feed)
            total = _time.perf_counter() - t0
            totals.append(total * 1e3)
            for name in stages:
                per_iter[name].append(current.get(name, 0.0) * 1e3)
            per_iter[OTHER].append((total - sum(current.values())) * 1e3)
    finally:
        for h in handles:
            h.remove()
    return {"per_iteration_ms": dict(per_iter), "total_ms": totals}


def stage_of(node_name: str, stages: list[str]) -> str:
    """'/bank/convs.0/conv/Conv' -> 'bank', '/banks.0/Conv' -> 'banks'; top-level glue ('/Transpose') and unscoped
    fused nodes -> 'other'."""
    if node_name.startswith("/"):
        first = node_name[1:].split("/", 1)[0]
        if first in stages:
            return first
        head = first.split(".", 1)[0]  # '/conv1d_banks.0/conv1d/Conv': a member of a ModuleList stage
        if head in stages:
            return head
    return OTHER


def ort_stage_times(path: str | Path, feed, threads: int | None, stages: list[str], warmup: int, iterations: int,
                    workdir: str | Path | None = None) -> dict:
    """ONNX Runtime's own profiler on a separate CPU session built with OnnxRunner's options (intra-op threads,
    one inter-op thread); see stage_times_from_trace. The trace is written to `workdir` (kept) or a temporary
    folder (removed)."""
    from ._lazy import require
    from .formats.onnx import new_session, session_options

    ort = require("onnxruntime", "onnx")
    with tempfile.TemporaryDirectory(prefix="edgeseq-ort-profile-") as scratch:
        folder = Path(workdir) if workdir is not None else Path(scratch)
        options = session_options(ort, threads)
        options.enable_profiling = True
        options.profile_file_prefix = str(folder / f"ort-profile-t{threads or 0}")
        session = new_session(ort, str(path), options, ["CPUExecutionProvider"])
        for _ in range(warmup + iterations):
            session.run(None, feed)
        trace_path = session.end_profiling()
        del session
        with open(trace_path) as fh:
            events = json.load(fh)
    return {**stage_times_from_trace(events, stages, warmup), "trace": Path(trace_path).name}


def stage_times_from_trace(events: list[dict], stages: list[str], warmup: int) -> dict:
    """ONNX Runtime profiler events (this machine's, or a device's: remote/agent.py sends the same events
    back) -> per-iteration ms per stage and per op type, the node sums and the profiled model_run times; the first
    `warmup` runs are left out."""
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    nodes = sorted((e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")),
                   key=lambda e: e["ts"])
    per_iter: dict[str, list[float]] = defaultdict(list)
    per_op: dict[str, list[float]] = defaultdict(list)
    run_ms: list[float] = []
    node_sum_ms: list[float] = []
    unmapped: dict[str, int] = defaultdict(int)
    k = 0
    for i, run in enumerate(runs):
        start, end = run["ts"], run["ts"] + run["dur"]
        acc: dict[str, float] = defaultdict(float)
        ops: dict[str, float] = defaultdict(float)
        while k < len(nodes) and nodes[k]["ts"] < start:
            k += 1
        while k < len(nodes) and nodes[k]["ts"] <= end:
            name = nodes[k]["name"][: -len("_kernel_time")]
            op = nodes[k].get("args", {}).get("op_name", "?")
            stage = stage_of(name, stages)
            if stage == OTHER and i == 0:
                unmapped[f"{name} ({op})"] += 1
            acc[stage] += nodes[k]["dur"] / 1e3
            ops[op] += nodes[k]["dur"] / 1e3
            k += 1
        if i < warmup:
            continue
        run_ms.append(run["dur"] / 1e3)
        node_sum_ms.append(sum(acc.values()))
        for name in [*stages, OTHER]:
            per_iter[name].append(acc.get(name, 0.0))
        for op in set(ops) | set(per_op):
            per_op[op].append(ops.get(op, 0.0))
    if not run_ms:
        from .errors import RuntimeFailure

        raise RuntimeFailure("ONNX Runtime's profile holds no timed run (was the trace cut short?)")
    return {
        "per_iteration_ms": dict(per_iter),
        "per_op_type_ms": dict(per_op),
        "total_ms": node_sum_ms,
        "model_run_ms": run_ms,
        "other_nodes": dict(unmapped),
    }


def summarize_stages(raw: dict, stages: list[str], flops: dict[str, int] | None = None) -> dict:
    """Median ms per stage per iteration, its share of the summed medians, and the stage's share of the FLOPs."""
    flops = flops or {}
    medians = {name: statistics.median(raw["per_iteration_ms"][name]) for name in [*stages, OTHER]}
    means = {name: statistics.fmean(raw["per_iteration_ms"][name]) for name in [*stages, OTHER]}
    total = sum(medians.values()) or 1.0
    total_flops = sum(flops.values()) or 1
    return {
        name: {
            "median_ms": medians[name],
            "mean_ms": means[name],
            "share_pct": 100.0 * medians[name] / total,
            "flops": int(flops.get(name, 0)),
            "flops_share_pct": 100.0 * flops.get(name, 0) / total_flops,
        }
        for name in [*stages, OTHER]
    }


@dataclass(frozen=True)
class StageRow:
    stage: str
    flops_share_pct: float
    eager_ms: float | None  # None on a remote device: PyTorch is not there, and this machine's eager is no peer
    eager_share_pct: float | None
    onnxruntime_ms: float
    onnxruntime_share_pct: float

    @property
    def speedup(self) -> float | None:
        """Eager ms / ONNX Runtime ms for this stage (None when ONNX Runtime spent nothing there, or no eager)."""
        if self.eager_ms is None or self.onnxruntime_ms <= 0:
            return None
        return self.eager_ms / self.onnxruntime_ms


@dataclass(frozen=True)
class StageProfile:
    model: str
    artifact: str
    runtime: str  # where ONNX Runtime ran: onnxruntime-cpu, or onnxruntime-cpu@raspberry-pi-5
    batch: int
    time: int
    threads: int | None
    iterations: int
    rows: tuple[StageRow, ...]
    onnxruntime_op_types_ms: dict  # median ms per op type, largest first
    onnxruntime_unmapped_nodes: dict  # 'other' nodes (name (op type) -> count), for a model whose scopes are odd

    @property
    def eager_total_ms(self) -> float | None:
        if any(r.eager_ms is None for r in self.rows):
            return None
        return sum(r.eager_ms for r in self.rows)

    @property
    def onnxruntime_total_ms(self) -> float:
        return sum(r.onnxruntime_ms for r in self.rows)

    def to_dict(self) -> dict:
        d = asdict(self)
        for row, src in zip(d["rows"], self.rows):
            row["speedup"] = src.speedup
        d["eager_total_ms"] = self.eager_total_ms
        d["onnxruntime_total_ms"] = self.onnxruntime_total_ms
        return d


def profile_stages(artifact: str | Path, model=None, *, weights=None, batch: int = 1, time: int | None = None,
                   threads: int | None = None, warmup: int = 5, iterations: int = 20, device=None) -> StageProfile:
    """Per-stage time of an edgeseq ONNX artifact (or any ONNX export of a registered model, with `model`) in
    ONNX Runtime, on the same real-speech input. Here (device None / cpu): next to the PyTorch original in eager
    mode. On an ssh device (a profile name or .toml): the device's own onnxruntime profiler, no eager column."""
    from .enums import Format
    from .formats import detect_format
    from .formats.onnx import OnnxRunner
    from .formats.torch import TorchRunner

    path = Path(artifact)
    if not path.is_file():
        raise InputError(f"{str(path)!r} does not exist or is not a file")
    fmt = detect_format(path)
    if fmt is not Format.ONNX:
        raise UnsupportedError(f"per-stage timing reads ONNX Runtime's profiler, so it takes .onnx artifacts, not "
                               f"{fmt.value}; for TFLite on a phone, LiteRT's benchmark_model has "
                               "--enable_op_profiling=true")
    iterations, warmup = integer(iterations, "iterations"), integer(warmup, "warmup", minimum=0)
    from .resolve import device_profile as _device_profile, model_of as _model_of, open_runner

    profile = _device_profile(device)
    here = profile is None and device in (None, "cpu") or (
        profile is not None and profile.local and profile.runner_device() == "cpu")
    remote = None
    if not here:
        remote = (open_runner(path, device=device, threads=threads)
                  if profile is not None and not profile.local else None)
        if remote is None or getattr(remote, "node_trace", None) is None:
            if remote is not None:
                remote.close()
            raise UnsupportedError(f"per-stage timing runs ONNX Runtime's CPU profiler, here or on an ssh device "
                                   f"running edgeseq's device agent; not on {device!r}")
    if profile is not None and here and threads is None:
        threads = profile.threads
    try:
        if remote is not None:
            spec = _model_of(remote, model)
        else:
            with OnnxRunner(path, device="cpu", threads=threads) as onnx_runner:
                spec = _model_of(onnx_runner, model)
        steps = time if spec.has_dynamic_time else None
        feed = spec.example_inputs(batch=batch, time=steps, source="speech")
        actual_time = int(feed[spec.input_names[0]].shape[1]) if feed[spec.input_names[0]].ndim > 1 else 1
        flops = spec.flops_by_stage(time=actual_time, batch=batch)
        module = spec.build(weights)
        stages = stage_names(module)
        if remote is not None:
            raw = stage_times_from_trace(remote.node_trace(feed, warmup=warmup, iterations=iterations), stages,
                                         warmup)
            runtime, eager, threads = remote.runtime, None, remote.threads
        else:
            with TorchRunner(spec, module=module, threads=threads) as runner:
                eager = summarize_stages(eager_stage_times(runner, feed, stages, warmup, iterations), stages, flops)
            raw = ort_stage_times(path, feed, threads, stages, warmup, iterations)
            runtime = "onnxruntime-cpu"
    finally:
        if remote is not None:
            remote.close()
    ort = summarize_stages(raw, stages, flops)
    rows = tuple(StageRow(name, ort[name]["flops_share_pct"],
                          eager[name]["median_ms"] if eager else None, eager[name]["share_pct"] if eager else None,
                          ort[name]["median_ms"], ort[name]["share_pct"]) for name in [*stages, OTHER])
    ops = {op: statistics.median(v) for op, v in raw["per_op_type_ms"].items()}
    ops = dict(sorted(ops.items(), key=lambda kv: -kv[1]))
    return StageProfile(spec.name, str(path), runtime, batch, actual_time, threads, len(raw["model_run_ms"]), rows,
                        ops, dict(raw["other_nodes"]))
