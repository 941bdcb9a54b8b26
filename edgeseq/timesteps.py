"""Per-timestep error: how a row's error against the PyTorch original is spread over the sequence, so an error that
grows with t (a recurrence amplifying fp16 or int8 rounding) is seen even when the average over T passes.

The error at frame t is ||actual_t - reference_t|| over the frame's batch and features, divided by the RMS frame norm
of the reference. With that scale the RMS of the per-frame errors is exactly the case's relative L2, so the curve and
the parity number speak the same unit, and a quiet frame (silence in speech) cannot blow one frame's error up.
Numpy only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

MIN_FRAMES = 20  # shorter runs say nothing about growth: no timestep error below this T
CURVE_POINTS = 50  # the curve kept in report.json: the per-frame error averaged (RMS) into this many bins
DEFAULT_MAX_GROWTH = 2.0  # end window's error over the start window's: measured 0.9-1.04 on every reference row
FLOOR_OF_TOLERANCE = 0.01  # errors below 1% of the tolerance count as that floor: noise cannot "grow"


@dataclass(frozen=True)
class TimestepError:
    """One output (or one half of a bidirectional output) of one case: its error over time.

    start / middle / end: RMS error of the first, middle and last tenth of the frames, in time order. growth: the
    error where the recurrence ends over where it starts (for the backward half that is start / end: it runs from
    the last frame to the first). flagged: growth beyond max_growth."""

    output: str
    half: str  # "all", or "forward" / "backward" for a bidirectional output's [forward | backward] last axis
    batch: int
    time: int
    source: str
    start: float
    middle: float
    end: float
    growth: float
    max_growth: float
    curve: tuple[float, ...]

    @property
    def flagged(self) -> bool:
        return not self.growth <= self.max_growth

    @property
    def label(self) -> str:
        return self.output if self.half == "all" else f"{self.output} ({self.half} half)"

    def summary(self) -> str:
        return (f"{self.label}: error grows {self.growth:.2f}x over T={self.time} "
                f"(start {self.start:.2g}, middle {self.middle:.2g}, end {self.end:.2g}; limit {self.max_growth:g}x)")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["curve"] = list(self.curve)
        d["flagged"] = self.flagged
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TimestepError":
        d = {k: v for k, v in d.items() if k != "flagged"}
        return cls(**{**d, "curve": tuple(d.get("curve", ()))})


def frame_errors(reference: np.ndarray, actual: np.ndarray, time_axis: int) -> np.ndarray:
    """Per-frame error along time_axis, scaled by the reference's RMS frame norm (see the module docstring)."""
    ref = np.moveaxis(np.asarray(reference, np.float64), time_axis, 0)
    diff = np.moveaxis(np.asarray(actual, np.float64), time_axis, 0) - ref
    frames = ref.shape[0]
    err = np.linalg.norm(diff.reshape(frames, -1), axis=1)
    scale = math.sqrt(float(np.mean(np.square(np.linalg.norm(ref.reshape(frames, -1), axis=1)))))
    if scale == 0.0:
        return np.where(err == 0.0, 0.0, np.inf)
    return err / scale


def _rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(values)))) if values.size else 0.0


def summarize(output: str, half: str, errors: np.ndarray, *, tolerance: float, max_growth: float | None,
              batch: int, time: int, source: str, backward: bool = False) -> TimestepError:
    frames = errors.shape[0]
    window = max(1, frames // 10)
    mid = frames // 2
    start = _rms(errors[:window])
    middle = _rms(errors[max(0, mid - window // 2): max(0, mid - window // 2) + window])
    end = _rms(errors[frames - window:])
    floor = tolerance * FLOOR_OF_TOLERANCE if math.isfinite(tolerance) else 0.0
    first, last = (max(end, floor), max(start, floor)) if backward else (max(start, floor), max(end, floor))
    growth = last / first if first > 0 else (1.0 if last == 0 else math.inf)
    bins = np.array_split(errors, min(CURVE_POINTS, frames))
    curve = tuple(_rms(b) for b in bins)
    limit = DEFAULT_MAX_GROWTH if max_growth is None else float(max_growth)
    return TimestepError(output, half, batch, time, source, start, middle, end, float(growth), limit, curve)


def timestep_errors(output: str, reference: np.ndarray, actual: np.ndarray, *, time_axis: int, halves: bool,
                    tolerance: float, max_growth: float | None, batch: int, time: int,
                    source: str) -> list[TimestepError]:
    """The timestep errors of one output of one case: one for the whole output, or its forward and backward halves
    apart when the output is a bidirectional recurrence's [forward | backward] concatenation on its last axis."""
    reference, actual = np.asarray(reference), np.asarray(actual)
    if reference.shape != actual.shape or reference.ndim == 0 or reference.shape[time_axis] < MIN_FRAMES:
        return []
    if not np.isfinite(actual).all():
        return []
    common = {"tolerance": tolerance, "max_growth": max_growth, "batch": batch, "time": time, "source": source}
    if halves and reference.shape[-1] % 2 == 0 and time_axis % reference.ndim != reference.ndim - 1:
        h = reference.shape[-1] // 2
        return [summarize(output, name, frame_errors(reference[..., part], actual[..., part], time_axis),
                          backward=(name == "backward"), **common)
                for name, part in (("forward", slice(0, h)), ("backward", slice(h, None)))]
    return [summarize(output, "all", frame_errors(reference, actual, time_axis), **common)]


def keep_longest(found: list[TimestepError]) -> tuple[TimestepError, ...]:
    """One per (output, half): the longest case's, and of those the one that grows most (report.json stays small)."""
    best: dict[tuple[str, str], TimestepError] = {}
    for te in found:
        key = (te.output, te.half)
        have = best.get(key)
        if have is None or (te.time, te.growth) > (have.time, have.growth):
            best[key] = te
    return tuple(best.values())
