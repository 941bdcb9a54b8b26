import time

import numpy as np
import pytest

import edgeseq
from edgeseq.errors import InputError
from edgeseq.latency import FRAMES_PER_SECOND, LatencyResult, measure
from edgeseq.runner import Runner
from edgeseq.tensors import TensorSpec


class SleepRunner(Runner):
    """A runner with a known cost, to check the statistics rather than a real runtime."""

    format = edgeseq.Format.ONNX

    def __init__(self, ms):
        super().__init__(threads=1)
        self.ms, self.calls = ms, 0

    @property
    def runtime(self):
        return "sleep"

    def _load(self):
        return (TensorSpec("x", ("batch", "time", 2)),), ("y",)

    def _infer(self, feed):
        self.calls += 1
        time.sleep(self.ms / 1e3)
        return {"y": feed["x"]}


def test_statistics_are_consistent():
    runner = SleepRunner(2.0)
    feed = {"x": np.zeros((2, 160, 2), np.float32)}
    r = measure(runner, feed, warmup=3, iterations=12)
    assert runner.calls == 15 and r.iterations == 12
    assert 2.0 <= r.min_ms <= r.p50_ms <= r.p90_ms <= r.p99_ms
    assert (r.batch, r.time, r.threads) == (2, 160, 1)
    assert r.frames_per_s == pytest.approx(2 * 160 / (r.mean_ms / 1e3))
    assert r.rtf == pytest.approx((r.mean_ms / 1e3) / (160 / FRAMES_PER_SECOND))
    assert r.peak_rss_mb > 10


def test_time_budget_stops_early():
    r = measure(SleepRunner(5.0), {"x": np.zeros((1, 8, 2), np.float32)}, warmup=0, iterations=10_000, budget_s=0.05)
    assert 1 <= r.iterations < 100


def test_bad_counts():
    with pytest.raises(InputError):
        measure(SleepRunner(0), {"x": np.zeros((1, 1, 2), np.float32)}, iterations=0)


class ColdStartRunner(SleepRunner):
    """A runtime whose first calls are slow (allocation, kernel selection) and later ones fast, as real ones are."""

    def __init__(self, cold_ms, cold_calls, warm_ms):
        super().__init__(warm_ms)
        self.cold_ms, self.cold_calls = cold_ms, cold_calls

    def _infer(self, feed):
        if self.calls < self.cold_calls:
            self.calls += 1
            time.sleep(self.cold_ms / 1e3)
            return {"y": feed["x"]}
        return super()._infer(feed)


def test_warm_up_runs_are_neither_timed_nor_kept():
    runner = ColdStartRunner(cold_ms=300.0, cold_calls=3, warm_ms=1.0)
    r = measure(runner, {"x": np.zeros((1, 8, 2), np.float32)}, warmup=3, iterations=20)
    assert runner.calls == 23 and r.iterations == 20
    assert 1.0 <= r.min_ms and r.p99_ms < 150.0 and r.mean_ms < 150.0  # no 300 ms cold call among the samples


def test_percentiles_are_the_ones_they_are_named_after():
    from edgeseq.latency import Timings

    t = Timings.from_samples(np.arange(1.0, 101.0))  # 1 .. 100 ms: each percentile is a different sample
    assert (t.p50_ms, t.p90_ms, t.p99_ms) == pytest.approx((50.5, 90.1, 99.01))
    assert (t.mean_ms, t.min_ms, t.iterations) == (pytest.approx(50.5), 1.0, 100)


def test_profile_our_artifact_uses_real_speech_at_the_asked_length(lite_onnx):
    r = edgeseq.profile(lite_onnx.path, time=120, batch=2, warmup=1, iterations=3, threads=1)
    assert (r.batch, r.time, r.threads, r.iterations) == (2, 120, 1, 3)
    assert r.artifact_bytes == lite_onnx.size_bytes and r.runtime == "onnxruntime-cpu"
    assert LatencyResult.from_dict(r.to_dict()) == r


# --- cuda_event_times: the loop the CUDA runners share, with stand-in events (the real ones need a GPU) ----------

class _Clock:
    """Stand-in CUDA events: record() stamps a fake device clock that each enqueue advances by `cost` ms."""

    def __init__(self, cost):
        self.now, self.cost, self.streams = 0.0, cost, []

    def enqueue(self):
        self.now += self.cost

    def event(self):
        clock = self

        class Event:
            def record(self, stream=None):
                clock.streams.append(stream)
                self.at = clock.now

            def synchronize(self):
                pass

            def elapsed_time(self, other):
                return other.at - self.at

        return Event()


def test_cuda_event_times_warm_up_then_time_each_enqueue_on_the_stream():
    from edgeseq.latency import cuda_event_times

    clock = _Clock(cost=0.25)
    calls = []

    def enqueue():
        calls.append(1)
        clock.enqueue()

    times = cuda_event_times(enqueue, stream="s1", warmup=3, iterations=4, budget_s=None, events=clock.event)
    assert times == [0.25] * 4  # the events bracket exactly one enqueue each
    assert len(calls) == 3 + 4
    assert clock.streams == ["s1"] * 8  # both events of each sample on the stream the work was queued on


def test_cuda_event_times_stop_at_the_budget_with_at_least_one_sample():
    from edgeseq.latency import cuda_event_times

    clock = _Clock(cost=1.0)

    def slow():
        time.sleep(0.02)
        clock.enqueue()

    times = cuda_event_times(slow, warmup=0, iterations=1000, budget_s=0.05, events=clock.event)
    assert 1 <= len(times) < 20


def test_device_timings_keep_the_end_to_end_p50_in_the_note():
    from edgeseq.latency import Timings, device_timings

    e2e = Timings.from_samples([2.0, 3.0, 4.0])
    t = device_timings([1.0, 1.5, 2.0], e2e, "device time from CUDA events")
    assert t.p50_ms == 1.5 and t.iterations == 3
    assert t.note == "device time from CUDA events; end to end with host copies p50 3.000 ms"
