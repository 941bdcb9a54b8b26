"""Latency: warm-up, then N iterations or a time budget; percentiles, throughput, real-time factor, memory."""

from __future__ import annotations

import os
import resource
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .runner import Runner

FRAMES_PER_SECOND = 80  # 12.5 ms hop: the real-time factor is latency / (T / 80 s of audio)


@dataclass(frozen=True)
class LatencyResult:
    runtime: str
    artifact: str
    precision: str
    batch: int
    time: int
    threads: int | None
    warmup: int
    iterations: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    std_ms: float
    frames_per_s: float
    rtf: float | None  # < 1 is faster than real time; None: the model declares no frame rate
    peak_rss_mb: float  # process-wide peak, as the OS reports it (on the device, for remote runners)
    artifact_bytes: int | None = None
    note: str = ""  # how the numbers were obtained when it is not edgeseq's own loop (e.g. benchmark_model)
    emulated: bool = False  # timed under an emulator (QEMU): the emulator's speed on this host, not the device's

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LatencyResult":
        return cls(**d)


EMULATED_NOTE = "emulated: QEMU's speed on this host, not the device's latency; never judged against a budget"


@dataclass(frozen=True)
class Timings:
    """What a timing loop hands back: latency statistics in ms (from samples, or from a tool's summary)."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    std_ms: float
    iterations: int
    peak_rss_mb: float | None = None  # None: this process's own peak (local runners)
    note: str = ""

    @classmethod
    def from_samples(cls, samples_ms, peak_rss_mb: float | None = None, note: str = "") -> "Timings":
        ms = np.asarray(samples_ms, dtype=np.float64)
        if ms.size == 0:
            from .errors import RuntimeFailure

            raise RuntimeFailure("the timing loop produced no samples")
        return cls(p50_ms=float(np.percentile(ms, 50)), p90_ms=float(np.percentile(ms, 90)),
                   p99_ms=float(np.percentile(ms, 99)), mean_ms=float(ms.mean()), min_ms=float(ms.min()),
                   std_ms=float(ms.std()), iterations=int(ms.size), peak_rss_mb=peak_rss_mb, note=note)


def time_locally(runner: "Runner", feed: dict[str, np.ndarray], *, warmup: int, iterations: int,
                 budget_s: float | None) -> Timings:
    """Time runner.infer end to end in this process (host in, host out: what an app pays)."""
    runner.load()

    def call():
        runner.infer(feed)
        runner.synchronize()

    return Timings.from_samples(host_times(call, warmup=warmup, iterations=iterations, budget_s=budget_s))


def host_times(call: Callable[[], object], *, warmup: int, iterations: int, budget_s: float | None) -> list[float]:
    """Wall time (ms) of each call() after `warmup` untimed ones; stops at `iterations` or once `budget_s` has
    passed (at least one sample). The loop every whole-call host timing here uses (per-stage eager timing,
    stage_profile, times inside the call with hooks)."""
    for _ in range(warmup):
        call()
    samples: list[float] = []
    deadline = time.perf_counter() + budget_s if budget_s else None
    while len(samples) < iterations:
        t0 = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t0) * 1e3)
        if deadline is not None and time.perf_counter() > deadline:
            break
    return samples


def cuda_event_times(enqueue: Callable[[], object], *, stream=None, warmup: int, iterations: int,
                     budget_s: float | None, events: Callable[[], object] | None = None) -> list[float]:
    """Device time (ms) of each enqueue(): queue one inference on `stream` (a torch.cuda.Stream; None: torch's
    current stream), inputs already on the GPU, between two CUDA events recorded on that stream. The three CUDA
    runners (PyTorch, TensorRT, ONNX Runtime's CUDA / TensorRT providers on a stream handed to them) share this
    loop so their rows are measured alike. Stops at `iterations` or once `budget_s` has passed (at least one
    sample). `events` makes an event (tests pass a stand-in; default torch.cuda.Event(enable_timing=True))."""
    if events is None:
        import torch

        def events():
            return torch.cuda.Event(enable_timing=True)

    for _ in range(warmup):
        enqueue()
    times: list[float] = []
    deadline = time.perf_counter() + budget_s if budget_s else None
    while len(times) < iterations:
        start, end = events(), events()
        start.record(stream)
        enqueue()
        end.record(stream)
        end.synchronize()
        times.append(float(start.elapsed_time(end)))
        if deadline is not None and time.perf_counter() > deadline:
            break
    return times


def device_timings(device_ms: list[float], e2e: Timings, how: str) -> Timings:
    """A CUDA runner's result: percentiles of the device times, the end-to-end p50 (host copies in and out, what an
    app pays) in the note."""
    return Timings.from_samples(device_ms, note=f"{how}; end to end with host copies p50 {e2e.p50_ms:.3f} ms")


def own_peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM, which exec resets, where Linux has it; ru_maxrss elsewhere, which
    Linux carries across exec (a Python parent holding 2 GB made a 300 MB child read 1.9 GB)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(
    runner: "Runner",
    feed: dict[str, np.ndarray],
    *,
    warmup: int = 5,
    iterations: int = 50,
    budget_s: float | None = None,
    artifact: str = "",
    precision: str = "fp32",
    batch: int | None = None,
    time_axis: int | None = None,
    artifact_bytes: int | None = None,
    frames_per_second: float | None = FRAMES_PER_SECOND,
) -> LatencyResult:
    """Time the runner (Runner.timed_runs: here for local runners, on the device for remote ones); stops at
    `iterations` or `budget_s`."""
    from ._checks import integer, positive_number

    iterations, warmup = integer(iterations, "iterations"), integer(warmup, "warmup", minimum=0)
    if budget_s is not None:  # a zero or negative budget would end timing after one run (or silently mean none)
        budget_s = positive_number(budget_s, "budget_s")
    runner.load()
    timings = runner.timed_runs(feed, warmup=warmup, iterations=iterations, budget_s=budget_s)
    first = next(iter(feed.values()), None)
    if batch is None:
        batch = int(first.shape[0]) if first is not None and first.ndim else 1
    if time_axis is None:
        time_axis = int(first.shape[1]) if first is not None and first.ndim > 1 else 1
    mean = timings.mean_ms
    size = artifact_bytes
    if size is None and artifact and os.path.isfile(artifact):
        size = os.path.getsize(artifact)
    peak = timings.peak_rss_mb
    if peak is None:
        peak = own_peak_rss_mb()
    return LatencyResult(
        runtime=runner.runtime,
        artifact=artifact,
        precision=precision,
        batch=batch,
        time=time_axis,
        threads=runner.threads,
        warmup=warmup,
        iterations=timings.iterations,
        p50_ms=timings.p50_ms,
        p90_ms=timings.p90_ms,
        p99_ms=timings.p99_ms,
        mean_ms=mean,
        min_ms=timings.min_ms,
        std_ms=timings.std_ms,
        frames_per_s=batch * time_axis / (mean / 1e3),
        rtf=(mean / 1e3) / (time_axis / frames_per_second) if frames_per_second else None,
        peak_rss_mb=peak,
        artifact_bytes=size,
        note=timings.note,
        emulated=runner.emulated,
    )
