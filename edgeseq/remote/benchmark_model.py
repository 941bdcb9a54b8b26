"""LiteRT's `benchmark_model` tool: build its command line, parse what it prints into latency.Timings.

What it prints (tensorflow/lite/tools/benchmark/benchmark_model.cc; lines carry an "INFO: " prefix in current builds,
none in older ones): a "Running benchmark for at least N iterations ..." line, then one statistics line per phase
(warm-up first, then the timed runs), all in microseconds:

    count=50 first=249042 curr=250889 min=247067 max=254474 avg=249684 std=1442 [p5=... median=... p95=...]
    count=1 curr=3512391                       (every run took the same time: Stat's "all same" form)

then "Inference timings in us: Init: ..., First inference: ..., Warmup (avg): ..., Inference (avg): ..." and,
where the platform supports it, "Memory footprint delta from the start of the tool (MB): init=... overall=..."
(older builds: "Peak memory footprint (MB): init=... overall=..."; with --report_peak_memory_footprint also
"Overall peak memory footprint (MB) via periodic monitoring: ..."). The percentile tail (p5/median/p95) comes from
StatWithPercentiles in newer builds. benchmark_model prints no p90/p99: we report the p95 and the max in their
place, upper bounds of the real values, and say so in the result's note.
"""

from __future__ import annotations

import math
import re
import shlex
from typing import Mapping, Sequence

from ..errors import DeviceError
from ..latency import Timings

_NUM = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_STAT = re.compile(r"\bcount=\d+")
_FIELD = re.compile(rf"(\w+)=({_NUM})")
_SUMMARY = re.compile(rf"Inference timings in us: Init: (?P<init>{_NUM}), First inference: (?P<first>{_NUM}), "
                      rf"Warmup \(avg\): (?P<warmup>{_NUM}), Inference \(avg\): (?P<avg>{_NUM})")
_MEM_DELTA = re.compile(rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): "
                        rf"init=(?P<init>{_NUM}) overall=(?P<overall>{_NUM})")
_MEM_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: (?P<peak>{_NUM})")
_ERROR = re.compile(r"^ERROR:\s*(?P<msg>.+)$")

DELEGATE_FLAGS = {
    "xnnpack": ("--use_xnnpack=true",),
    "cpu": ("--use_xnnpack=false",),
    "gpu": ("--use_gpu=true",),
    "nnapi": ("--use_nnapi=true",),
}


def benchmark_argv(binary: str, graph: str, *, threads: int | None, delegate: str, warmup: int, iterations: int,
                   budget_s: float | None = None, inputs: Mapping[str, Sequence[int]] | None = None) -> list[str]:
    """benchmark_model's arguments for exactly `warmup` + `iterations` runs (min_secs=0 so it does not add runs to
    fill a second; max_secs is the budget). `inputs` (name -> shape, in the interpreter's input order) fixes dynamic
    dimensions (--input_layer / --input_layer_shape); without it the model's own shapes are used."""
    flags = DELEGATE_FLAGS.get(delegate)
    if flags is None:
        raise DeviceError(f"benchmark_model has no flag for delegate {delegate!r} (it drives "
                          f"{', '.join(DELEGATE_FLAGS)})")
    argv = [binary, f"--graph={graph}"]
    if threads:
        argv.append(f"--num_threads={threads}")
    argv += [*flags, f"--warmup_runs={warmup}", "--warmup_min_secs=0", f"--num_runs={iterations}", "--min_secs=0"]
    if budget_s:
        argv.append(f"--max_secs={budget_s:g}")
    if inputs:
        argv.append("--input_layer=" + ",".join(inputs))
        argv.append("--input_layer_shape=" + ":".join(",".join(str(int(d)) for d in shape)
                                                      for shape in inputs.values()))
    return argv


def shell_line(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def _stat_lines(text: str) -> list[dict[str, float]]:
    stats = []
    for line in text.splitlines():
        match = _STAT.search(line)
        if not match:
            continue
        fields = {k: float(v) for k, v in _FIELD.findall(line[match.start():])}
        if "curr" not in fields and fields.get("count", 0) > 0:
            continue
        stats.append(fields)
    return stats


def parse_output(text: str) -> Timings:
    """The timed runs' statistics as Timings (ms); DeviceError naming benchmark_model's own error when it failed."""
    stats = _stat_lines(text)
    summary = _SUMMARY.search(text)
    if not stats or summary is None:
        raise DeviceError(f"benchmark_model did not finish: {failure_reason(text)}")
    run = stats[-1]  # warm-up comes first, the timed runs last
    count = int(run["count"])
    if count < 1:
        raise DeviceError("benchmark_model timed no runs (count=0)")
    us = 1e-3
    curr = run["curr"]
    lo = run.get("min", curr)
    hi = run.get("max", curr)
    mean = float(summary.group("avg")) if "avg" not in run else run["avg"]
    std = run.get("std", 0.0)
    notes = []
    if "median" in run:
        p50 = run["median"]
        p90, p99 = run.get("p95", hi), hi
        notes.append("benchmark_model: p50 is its median; p90 and p99 are its p95 and max (upper bounds)")
    else:
        p50, p90, p99 = mean, hi, hi
        notes.append("benchmark_model printed no percentiles: p50 is the mean; p90 and p99 are the max (upper bounds)")
    peak = _MEM_PEAK.search(text)
    delta = _MEM_DELTA.search(text)
    if peak:
        peak_mb = float(peak.group("peak"))
    elif delta:
        peak_mb = float(delta.group("overall"))
        notes.append("memory is benchmark_model's footprint delta, not the process RSS")
    else:
        peak_mb = math.nan
        notes.append("benchmark_model reported no memory footprint")
    return Timings(p50_ms=p50 * us, p90_ms=p90 * us, p99_ms=p99 * us, mean_ms=mean * us, min_ms=lo * us,
                   std_ms=std * us, iterations=count, peak_rss_mb=peak_mb, note="; ".join(notes))


def failure_reason(text: str) -> str:
    """The first two distinct ERROR lines benchmark_model printed (cause, then where), else its last line."""
    errors: list[str] = []
    for line in text.splitlines():
        match = _ERROR.match(line.strip())
        if match and match.group("msg").strip() not in errors:
            errors.append(match.group("msg").strip())
    if errors:
        return "; ".join(errors[:2])[:300]
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"
