"""The one CUDA-graph timing loop the GPU benches share (gpu_check, triton_gru_probe, compile_probe), so their
numbers are measured the same way: warm-up on a side stream, capture, a few untimed replays, then CUDA events
around each replay. Imported from the source tree (the scripts put bench/ on sys.path)."""

from __future__ import annotations

import numpy as np
import torch


def event_times_ms(step, iterations: int) -> list[float]:
    """Device time of each of `iterations` calls of step(), each between two CUDA events and synchronized."""
    times = []
    for _ in range(iterations):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times


def capture(fn, warmup: int = 3) -> torch.cuda.CUDAGraph:
    """fn() captured in a CUDA graph after `warmup` calls on a side stream (cuDNN / cuBLAS workspaces, Triton
    compiles happen there, outside the capture)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph


def graph_times_ms(fn, iterations: int, replays: int = 10) -> list[float]:
    """Per-replay device times of a CUDA graph of fn(), after `replays` untimed replays."""
    graph = capture(fn)
    for _ in range(replays):
        graph.replay()
    torch.cuda.synchronize()
    return event_times_ms(graph.replay, iterations)


def graph_p50_ms(fn, iterations: int) -> float:
    """Median device time of one replay of a CUDA graph of fn()."""
    return float(np.median(graph_times_ms(fn, iterations)))
