"""Latency: warm-up, then N iterations or a time budget; percentiles, throughput, real-time factor, memory."""

from __future__ import annotations

import os
import resource
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

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
    rtf: float  # < 1 is faster than real time
    peak_rss_mb: float  # process-wide peak, as the OS reports it
    artifact_bytes: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LatencyResult":
        return cls(**d)


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
) -> LatencyResult:
    """Time runner.infer end to end (host in, host out: what an app pays). Stops at `iterations` or `budget_s`."""
    if iterations < 1 or warmup < 0:
        from .errors import InputError

        raise InputError(f"iterations must be >= 1 and warmup >= 0 (got {iterations}, {warmup})")
    runner.load()
    for _ in range(warmup):
        runner.infer(feed)
    runner.synchronize()
    samples: list[float] = []
    deadline = time.perf_counter() + budget_s if budget_s else None
    while len(samples) < iterations:
        t0 = time.perf_counter()
        runner.infer(feed)
        runner.synchronize()
        samples.append((time.perf_counter() - t0) * 1e3)
        if deadline is not None and time.perf_counter() > deadline:
            break
    ms = np.asarray(samples)
    first = next(iter(feed.values()))
    batch = batch if batch is not None else (int(first.shape[0]) if first.ndim else 1)
    time_axis = time_axis if time_axis is not None else (int(first.shape[1]) if first.ndim > 1 else 1)
    mean = float(ms.mean())
    size = artifact_bytes
    if size is None and artifact and os.path.isfile(artifact):
        size = os.path.getsize(artifact)
    return LatencyResult(
        runtime=runner.runtime,
        artifact=artifact,
        precision=precision,
        batch=batch,
        time=time_axis,
        threads=runner.threads,
        warmup=warmup,
        iterations=len(samples),
        p50_ms=float(np.percentile(ms, 50)),
        p90_ms=float(np.percentile(ms, 90)),
        p99_ms=float(np.percentile(ms, 99)),
        mean_ms=mean,
        min_ms=float(ms.min()),
        std_ms=float(ms.std()),
        frames_per_s=batch * time_axis / (mean / 1e3),
        rtf=(mean / 1e3) / (time_axis / FRAMES_PER_SECOND),
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        artifact_bytes=size,
    )
