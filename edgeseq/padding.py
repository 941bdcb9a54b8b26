"""Padding safety: does each row of a zero-padded batch give what the same row gives alone, at its own length?

Apps batch utterances of different lengths by padding them to the longest. A model is padding-safe when nothing
from the padding reaches a row's valid frames: its convs, pools and batch norms are masked, and a bidirectional
recurrence starts each row's backward pass at the row's own last frame (a declared lengths input, e.g. ONNX's GRU
sequence_lens or edgeseq's masked TFLite loop). A model that is not is reported so, with the error it would make.
Numpy only over runners' load / infer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .parity import OutputError, Tolerances, compare

DEFAULT_TIME = 50  # the longest row of each padded batch


def ragged_lengths(batch: int, time: int, seed: int = 0) -> tuple[int, ...]:
    """Lengths for a padded batch: the longest (time) and 1 always, the rest spread between, in no order."""
    if batch == 1:
        return (time,)
    rng = np.random.default_rng(seed)
    middle = [int(v) for v in rng.integers(1, time + 1, size=batch - 2)]
    out = [time, 1, *middle]
    rng.shuffle(out)
    return tuple(out)


@dataclass(frozen=True)
class PaddingCase:
    """One padded batch: each row's outputs (cropped to its length) against that row run alone at its length."""

    lengths: tuple[int, ...]
    rows: tuple[OutputError, ...]  # the worst output of each row, in row order

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.rows)

    def to_dict(self) -> dict:
        return {"lengths": list(self.lengths), "passed": self.passed, "rows": [o.to_dict() for o in self.rows]}

    @classmethod
    def from_dict(cls, d: dict) -> "PaddingCase":
        return cls(tuple(d["lengths"]), tuple(OutputError.from_dict(o) for o in d["rows"]))


@dataclass(frozen=True)
class PaddingResult:
    model: str
    runtime: str
    precision: str
    artifact: str
    lengths_input: str  # the declared lengths input the padded batch fed ("" where the model takes none)
    cases: tuple[PaddingCase, ...]

    @property
    def padding_safe(self) -> bool:
        return bool(self.cases) and all(c.passed for c in self.cases)

    @property
    def worst(self) -> OutputError | None:
        rows = [o for c in self.cases for o in c.rows]
        return max(rows, key=lambda o: o.rel_l2 if o.rel_l2 == o.rel_l2 else np.inf) if rows else None

    def verdict(self) -> str:
        worst = self.worst
        err = f"worst row rel L2 {worst.rel_l2:.2g}" if worst else "no cases"
        how = f"lengths from {self.lengths_input!r}" if self.lengths_input else "no lengths input"
        if self.padding_safe:
            return f"padding-safe: every row of a padded batch equals its own run ({err}; {how})"
        fix = ("mask its convs, pools and recurrence with it" if self.lengths_input
               else "give the model a lengths input and mask with it")
        return (f"not padding-safe: padding reaches valid frames ({err} > {worst.tolerance.rel_l2:g}; {how}); "
                f"batch rows of one length, or {fix}")

    def to_dict(self) -> dict:
        return {"model": self.model, "runtime": self.runtime, "precision": self.precision, "artifact": self.artifact,
                "lengths_input": self.lengths_input, "padding_safe": self.padding_safe, "verdict": self.verdict(),
                "cases": [c.to_dict() for c in self.cases]}

    @classmethod
    def from_dict(cls, d: dict) -> "PaddingResult":
        return cls(d["model"], d["runtime"], d["precision"], d["artifact"], d["lengths_input"],
                   tuple(PaddingCase.from_dict(c) for c in d["cases"]))


def _time_axes(tensors) -> dict[str, int]:
    from .models.axes import TIME

    return {t.name: t.shape.index(TIME) for t in tensors if TIME in t.shape}


def _row(feed: dict[str, np.ndarray], b: int, length: int, axes: dict[str, int]) -> dict[str, np.ndarray]:
    """Row b alone: batch 1, cut to its own length along each input's time axis."""
    out = {}
    for name, value in feed.items():
        one = value[b:b + 1]
        if name in axes:
            one = np.take(one, range(length), axis=axes[name])
        out[name] = np.ascontiguousarray(one)
    return out


def check_padding(runner, spec, *, precision: str, tolerances: Tolerances, batches=(3, 8),
                  time: int = DEFAULT_TIME, source: str = "speech", artifact: str = "") -> PaddingResult:
    """Each padded batch (zeros past each row's length, the lengths input set where the model declares one)
    against each of its rows run alone; errors judged at the precision's tolerance."""
    if not spec.has_dynamic_time:
        raise InputError(f"model {spec.name!r} has a fixed time axis: there is nothing to pad")
    if spec.state:
        raise InputError(f"model {spec.name!r} streams with state; its chunked-vs-full gate covers lengths")
    in_axes, out_axes = _time_axes(spec.inputs), _time_axes(spec.outputs)
    lengths_input = spec.lengths[0] if spec.lengths else ""
    batches_fed = []
    for k, batch in enumerate(batches):
        lengths = ragged_lengths(batch, time, seed=k)
        feed = spec.example_inputs(batch=batch, time=time, source=source, seed=k)
        for name, axis in in_axes.items():  # zero padding past each row's end, as an app pads
            for b, length in enumerate(lengths):
                index = [slice(None)] * feed[name].ndim
                index[0], index[axis] = b, slice(length, None)
                feed[name][tuple(index)] = 0
        if lengths_input:
            feed[lengths_input] = np.asarray(lengths, dtype=feed[lengths_input].dtype)
        batches_fed.append((lengths, feed, [_row(feed, b, length, in_axes) for b, length in enumerate(lengths)]))
    prefetch = getattr(runner, "prefetch", None)  # a remote runner: every batch and row alone in one round trip
    if prefetch is not None:
        prefetch([f for _, feed, alone in batches_fed for f in (feed, *alone)])
    cases = []
    for lengths, feed, alone_feeds in batches_fed:
        padded = runner.infer(feed)
        rows = []
        for b, (length, row_feed) in enumerate(zip(lengths, alone_feeds)):
            alone = runner.infer(row_feed)
            errors = []
            for name, value in alone.items():
                got = padded[name][b:b + 1]
                if name in out_axes:
                    got = np.take(got, range(length), axis=out_axes[name])
                errors.append(compare(name, value, got, tolerances.get(precision, name)))
            rows.append(max(errors, key=lambda o: (not o.passed, o.rel_l2 if o.rel_l2 == o.rel_l2 else np.inf)))
        cases.append(PaddingCase(lengths, tuple(rows)))
    return PaddingResult(spec.name, runner.runtime, str(precision), artifact, lengths_input, tuple(cases))
