"""The chunked-vs-full gate: an artifact with explicit state, fed N frames at a time with its state carried from
call to call, must give what the PyTorch original gives over the whole sequence at once; and what each chunk costs.

A model streams when its spec declares `state` pairs (state input -> the output carrying it to the next call), as
cbhg-lite-stream does; an app does exactly what `stream` below does. Results are frozen dataclasses that
serialize to JSON like parity rows.
"""

from __future__ import annotations

import statistics
import time as _time
from dataclasses import dataclass

import numpy as np

from ._checks import is_integer
from .errors import InputError
from .parity import OutputError, Tolerance, Tolerances, compare

DEFAULT_CHUNKS = (1, 8, 32)
DEFAULT_TIME = 256  # frames streamed per case: 8 chunks of 32, 256 calls of 1
_ANY = Tolerance(rel_l2=float("inf"))  # the windowed approximation is measured, not judged
TIMING_REPEATS = 3  # the stream is replayed this many times for its timings; medians are reported


@dataclass(frozen=True)
class StreamCase:
    """One chunk size: the concatenated chunk outputs and the final state against the full-sequence reference,
    and the cost of a chunk next to the same frames' share of one full-sequence call on this runtime."""

    chunk: int
    calls: int
    outputs: tuple[OutputError, ...]  # the streamed outputs, then each final state
    first_chunk_ms: float
    chunk_ms: float  # median of the calls after the first
    full_ms: float  # one call over the whole sequence, same runtime
    time: int

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    @property
    def share_ratio(self) -> float:
        """A steady-state chunk's cost over its frames' share of a full-sequence call (1.0: state costs nothing)."""
        share = self.full_ms * self.chunk / self.time
        return self.chunk_ms / share if share > 0 else float("inf")

    def to_dict(self) -> dict:
        return {"chunk": self.chunk, "calls": self.calls, "time": self.time, "passed": self.passed,
                "first_chunk_ms": self.first_chunk_ms, "chunk_ms": self.chunk_ms, "full_ms": self.full_ms,
                "share_ratio": self.share_ratio, "outputs": [o.to_dict() for o in self.outputs]}

    @classmethod
    def from_dict(cls, d: dict) -> "StreamCase":
        return cls(d["chunk"], d["calls"], tuple(OutputError.from_dict(o) for o in d["outputs"]),
                   d["first_chunk_ms"], d["chunk_ms"], d["full_ms"], d["time"])


@dataclass(frozen=True)
class StreamResult:
    model: str
    runtime: str
    precision: str
    artifact: str
    batch: int
    source: str
    cases: tuple[StreamCase, ...]

    @property
    def passed(self) -> bool:
        return bool(self.cases) and all(c.passed for c in self.cases)

    @property
    def failures(self) -> list[str]:
        return [f"chunk {c.chunk}: {o.output}: {o.reason}" for c in self.cases for o in c.outputs if not o.passed]

    def to_dict(self) -> dict:
        return {"model": self.model, "runtime": self.runtime, "precision": self.precision, "artifact": self.artifact,
                "batch": self.batch, "source": self.source, "passed": self.passed,
                "cases": [c.to_dict() for c in self.cases]}

    @classmethod
    def from_dict(cls, d: dict) -> "StreamResult":
        return cls(d["model"], d["runtime"], d["precision"], d["artifact"], d["batch"], d["source"],
                   tuple(StreamCase.from_dict(c) for c in d["cases"]))


def zero_state(spec, batch: int) -> dict[str, np.ndarray]:
    """The state a stream starts from: zeros of each state input's shape (the full-sequence run's padding)."""
    by_name = {t.name: t for t in spec.inputs}
    return {name: np.zeros(spec.shape_for(by_name[name], batch, 1), np.dtype(by_name[name].dtype))
            for name, _ in spec.state}


def stream_plan(spec) -> dict:
    """What a stream needs to know of the model, as plain data (a device agent runs the same loop): the state pairs,
    each streamed input's time axis, each output's time axis."""
    from .models.axes import TIME

    state = dict(spec.state)
    streamed = {t.name: t.shape.index(TIME) for t in spec.inputs if t.name not in state and TIME in t.shape}
    if not streamed:
        raise InputError(f"model {spec.name!r} has no input with a time axis to stream")
    return {"state": [list(pair) for pair in spec.state], "streamed": streamed,
            "out_axes": {t.name: t.shape.index(TIME) for t in spec.outputs if TIME in t.shape}}


def stream(infer, spec, feed: dict[str, np.ndarray], chunk: int, on_call=None) -> dict:
    """Run `infer` chunk by chunk over `feed`'s streamed inputs (cut along each one's time axis), carrying the state;
    the outputs concatenated along their time axes, and the final state under each state output's name.
    on_call(seconds) gets each call's time. (edgeseq/remote/agent.py's _stream is this loop on a device.)"""
    plan = stream_plan(spec)
    state = {name: feed[name] for name, _ in spec.state}
    carried = set(dict(spec.state).values())
    streamed, out_axes = plan["streamed"], plan["out_axes"]
    first = next(iter(streamed))
    total = feed[first].shape[streamed[first]]
    pieces: dict[str, list[np.ndarray]] = {}
    for start in range(0, total, chunk):
        window = {n: np.take(feed[n], range(start, min(start + chunk, total)), axis=axis)
                  for n, axis in streamed.items()}
        began = _time.perf_counter()
        got = infer({**feed, **window, **state})
        if on_call:
            on_call(_time.perf_counter() - began)
        state = {name: got[out] for name, out in spec.state}
        for name, value in got.items():
            if name not in carried and name in out_axes:
                pieces.setdefault(name, []).append(value)
    out = {name: np.concatenate(parts, axis=out_axes[name]) for name, parts in pieces.items()}
    return {**out, **{out_name: state[name] for name, out_name in spec.state}}


def _local_streams(runner, spec, feed, chunks, repeats):
    """(full-call seconds, {chunk: each repeat's call seconds}, {chunk: stream outputs}), each call timed here."""
    full_times: list[float] = []
    calls: dict[int, list[list[float]]] = {chunk: [] for chunk in chunks}
    got: dict[int, dict] = {}
    for _ in range(repeats):  # interleaved: the full call and every chunk size see the same machine load
        began = _time.perf_counter()
        runner.infer(feed)
        full_times.append(_time.perf_counter() - began)
        for chunk in chunks:
            calls[chunk].append([])
            got[chunk] = stream(runner.infer, spec, feed, chunk, on_call=calls[chunk][-1].append)
    return full_times, calls, got


def check_stream(runner, reference, spec, *, precision: str, tolerances: Tolerances, chunks=DEFAULT_CHUNKS,
                 time: int = DEFAULT_TIME, batch: int = 1, source: str = "speech", artifact: str = "",
                 repeats: int = TIMING_REPEATS) -> StreamResult:
    """The gate over loaded runners: each chunk size's stream against the reference's one full-sequence call."""
    if not spec.state:
        raise InputError(f"model {spec.name!r} declares no state inputs / outputs, so it cannot stream; a streaming "
                         "model pairs each state input with the output that carries it (ModelSpec.state)")
    if not chunks or any(not is_integer(c) or c < 1 for c in chunks):
        raise InputError(f"chunk sizes must be whole numbers >= 1, got {list(chunks)}")
    feed = {**spec.example_inputs(batch=batch, time=time, source=source), **zero_state(spec, batch)}
    expected = reference.infer(feed)
    remote = getattr(runner, "stream_runs", None)  # a device runs every stream in one job: no round trip per chunk
    if remote is not None:
        full_times, calls, got = remote(feed, stream_plan(spec), tuple(chunks), repeats)
    else:
        full_times, calls, got = _local_streams(runner, spec, feed, chunks, repeats)
    cases = []
    for chunk in chunks:
        outputs = tuple(compare(name, expected[name], got[chunk][name], tolerances.get(precision, name))
                        for name in expected if name in got[chunk])
        runs = calls[chunk]
        later = [t for run in runs for t in run[1:]] or [t for run in runs for t in run]
        cases.append(StreamCase(chunk, len(runs[0]), outputs, 1e3 * statistics.median(run[0] for run in runs),
                                1e3 * statistics.median(later), 1e3 * statistics.median(full_times), time))
    return StreamResult(spec.name, runner.runtime, str(precision), artifact, batch, source, tuple(cases))


DEFAULT_LOOKAHEADS = (0, 8, 32)
DEFAULT_CONTEXT = 32  # frames of the past each window re-reads, for a model that carries no state


@dataclass(frozen=True)
class WindowCase:
    chunk: int
    lookahead: int
    rel_l2: float  # the concatenated chunk outputs against one full-sequence call


@dataclass(frozen=True)
class WindowedStream:
    """What streaming costs a model that cannot stream exactly (a BiGRU, no state): each chunk is computed from a
    window of `context` past frames, the chunk and `lookahead` future frames, and only the chunk's frames kept."""

    model: str
    runtime: str
    artifact: str
    context: int
    time: int
    cases: tuple[WindowCase, ...]

    def to_dict(self) -> dict:
        return {"model": self.model, "runtime": self.runtime, "artifact": self.artifact, "context": self.context,
                "time": self.time, "cases": [dict(chunk=c.chunk, lookahead=c.lookahead, rel_l2=c.rel_l2)
                                             for c in self.cases]}

    def lines(self) -> list[str]:
        """'chunk 8: lookahead 0 -> rel L2 0.31, 8 -> 0.12, 32 -> 0.004' per chunk size."""
        out = []
        for chunk in dict.fromkeys(c.chunk for c in self.cases):
            row = [c for c in self.cases if c.chunk == chunk]
            out.append(f"chunk {chunk}: " + ", ".join(f"lookahead {c.lookahead} -> rel L2 {c.rel_l2:.2g}" for c in row))
        return out


def windowed_stream(runner, spec, *, chunks=(8, 32), lookaheads=DEFAULT_LOOKAHEADS, context: int = DEFAULT_CONTEXT,
                    time: int = DEFAULT_TIME, source: str = "speech", artifact: str = "") -> WindowedStream:
    """Error against the full call of a stateless streaming approximation, per chunk size and lookahead."""
    from .models.axes import TIME

    if spec.state:
        raise InputError(f"model {spec.name!r} carries state: it streams exactly (check_stream)")
    for what, values in (("chunk sizes", chunks), ("lookaheads", lookaheads), ("context", (context,))):
        low = 1 if what == "chunk sizes" else 0
        if not values or any(not is_integer(v) or v < low for v in values):
            raise InputError(f"{what} must be whole numbers >= {low}, got {list(values)}")
    in_axes = {t.name: t.shape.index(TIME) for t in spec.inputs if TIME in t.shape}
    out_axes = {t.name: t.shape.index(TIME) for t in spec.outputs if TIME in t.shape}
    if not in_axes or not out_axes:
        raise InputError(f"model {spec.name!r} has no time axis to stream along")
    feed = spec.example_inputs(batch=1, time=time, source=source)
    full = runner.infer(feed)
    cases = []
    for chunk in chunks:
        for ahead in lookaheads:
            pieces: dict[str, list[np.ndarray]] = {name: [] for name in out_axes}
            for start in range(0, time, chunk):
                end = min(start + chunk, time)
                lo, hi = max(0, start - context), min(time, end + ahead)
                window = {n: np.take(v, range(lo, hi), axis=in_axes[n]) if n in in_axes else v
                          for n, v in feed.items()}
                got = runner.infer(window)
                for name, axis in out_axes.items():
                    pieces[name].append(np.take(got[name], range(start - lo, end - lo), axis=axis))
            errs = [compare(name, full[name], np.concatenate(pieces[name], axis=axis), _ANY).rel_l2
                    for name, axis in out_axes.items()]
            cases.append(WindowCase(chunk, ahead, max(errs)))
    return WindowedStream(spec.name, runner.runtime, artifact, context, time, tuple(cases))
