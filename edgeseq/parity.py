"""Parity: compare a runner's outputs with the PyTorch original, case by case, against precision-keyed tolerances.

Everything here is numpy only; the sweep talks to runners through load / infer / close and nothing else.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from ._checks import is_number as _is_number
from .timesteps import TimestepError, keep_longest, timestep_errors

if TYPE_CHECKING:  # pragma: no cover
    from .runner import Runner

SNR_CAP_DB = 200.0  # an exact match has infinite SNR; JSON holds this cap instead


MAX_REL_L2 = 10.0  # a relative L2 error of 10x the signal's norm checks nothing: a tolerance is below this


def validate_rel_l2(value, where: str = "rel_l2") -> float:
    """The one rule for a relative L2 tolerance (API, CLI --tolerance, device profiles): a number, 0 < x < 10.
    Zero, a negative, NaN or inf would fail every case or pass every one, so they are refused instead."""
    from .errors import InputError

    if not _is_number(value) or not 0 < float(value) < MAX_REL_L2:
        raise InputError(f"{where} must be a positive number below {MAX_REL_L2:g} (a relative L2 error), "
                         f"got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Tolerance:
    rel_l2: float
    max_abs: float | None = None
    min_cosine: float | None = None
    max_growth: float | None = None  # error growth over T that flags a row (None: timesteps.DEFAULT_MAX_GROWTH)

    def __post_init__(self) -> None:
        """Refuse only what makes no sense (NaN, a negative, rel_l2 <= 0). Loose values stay valid here: inf never
        fails (bench/bench_quant.py measures with it), max_abs=0 is an exact match, and older reports may hold
        rel_l2 >= 10. The strict rule for user input is validate_rel_l2, applied where the user's numbers come in."""
        from .errors import InputError

        if not (_is_number(self.rel_l2) and self.rel_l2 > 0):
            raise InputError(f"Tolerance.rel_l2 must be a positive number (inf: never fails), got {self.rel_l2!r}")
        object.__setattr__(self, "rel_l2", float(self.rel_l2))
        if self.max_abs is not None and not (_is_number(self.max_abs) and self.max_abs >= 0):
            raise InputError(f"Tolerance.max_abs must be a number >= 0 or None, got {self.max_abs!r}")
        if self.min_cosine is not None and not (_is_number(self.min_cosine) and -1 <= self.min_cosine <= 1):
            raise InputError(f"Tolerance.min_cosine must be a number in [-1, 1] or None, got {self.min_cosine!r}")
        if self.max_growth is not None and not (_is_number(self.max_growth) and self.max_growth >= 1):
            raise InputError(f"Tolerance.max_growth must be a number >= 1 or None, got {self.max_growth!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Tolerances:
    """Tolerances keyed by precision, then optionally overridden per output name."""

    by_precision: dict[str, Tolerance]
    per_output: dict[str, dict[str, Tolerance]] = field(default_factory=dict)

    def get(self, precision: str, output: str) -> Tolerance:
        precision = str(precision)
        override = self.per_output.get(precision, {}).get(output)
        if override is not None:
            return override
        if precision not in self.by_precision:
            raise KeyError(f"no tolerance for precision {precision!r}")
        return self.by_precision[precision]

    def with_rel_l2(self, precision: str, rel_l2: float) -> "Tolerances":
        table = dict(self.by_precision)
        table[str(precision)] = Tolerance(rel_l2=rel_l2)
        return Tolerances(table, self.per_output)


# Relative L2 against the PyTorch fp32 original, set from measured errors with about 2x margin:
# `python bench/bench_quant.py --tolerances` (bench/results/quant-tolerances.json) runs the ONNX defaults of every
# registered model over the full parity sweep (T = 1..1000, batch 1 and 3, speech and random inputs); worst seen:
#   fp32          4.3e-7  (attention-cbhg)      -> 1e-5   (float reassociation only; kept tight on purpose)
#   fp16          5.2e-4  (attention-cbhg)      -> 1e-3
#   int8-dynamic  1.2e-2  (cbhg-postnet; cbhg-lite 9.5e-3, cbhg 5.6e-3)  -> 2.5e-2
#   int8-static   6.3e-3  (attention-cbhg; cbhg-lite 5.8e-3, cbhg 5.1e-3) -> 1.5e-2
# PyTorch's own int8 (torch.ao dynamic, Linear + GRU) measures 1.5-2e-2 on cbhg / cbhg-lite: it would fail the int8
# gates, which is why the matrix reports it as information, not as a check. Override per model (ModelSpec.tolerances)
# or per output (Tolerances.per_output).
DEFAULT_TOLERANCES = Tolerances(
    {
        "fp32": Tolerance(rel_l2=1e-5),
        "fp16": Tolerance(rel_l2=1e-3),
        "int8-dynamic": Tolerance(rel_l2=2.5e-2),
        "int8-static": Tolerance(rel_l2=1.5e-2),
    }
)


@dataclass(frozen=True)
class OutputError:
    output: str
    max_abs: float
    rel_l2: float
    cosine: float
    snr_db: float
    tolerance: Tolerance
    passed: bool
    reason: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tolerance"] = self.tolerance.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "OutputError":
        return cls(**{**d, "tolerance": Tolerance(**d["tolerance"])})


def compare(output: str, reference: np.ndarray, actual: np.ndarray, tol: Tolerance) -> OutputError:
    """max abs, relative L2, cosine and SNR; NaN/Inf or a shape change is a failure with that reason."""
    nan = float("nan")
    reference = np.asarray(reference, dtype=np.float64)
    actual = np.asarray(actual)
    if reference.shape != actual.shape:
        reason = f"shape {list(actual.shape)} != reference {list(reference.shape)}"
        return OutputError(output, nan, nan, nan, nan, tol, False, reason)
    if not np.isfinite(actual).all():
        bad = int((~np.isfinite(actual)).sum())
        return OutputError(output, nan, nan, nan, nan, tol, False, f"{bad} non-finite values (NaN/Inf)")
    actual = actual.astype(np.float64)
    diff = actual - reference
    max_abs = float(np.abs(diff).max()) if diff.size else 0.0
    ref_norm, act_norm, err_norm = (float(np.linalg.norm(v)) for v in (reference, actual, diff))
    rel_l2 = err_norm / ref_norm if ref_norm > 0 else (0.0 if err_norm == 0 else math.inf)
    if ref_norm > 0 and act_norm > 0:
        cosine = float(np.dot(reference.ravel(), actual.ravel()) / (ref_norm * act_norm))
    else:
        cosine = 1.0 if ref_norm == act_norm else 0.0
    snr_db = SNR_CAP_DB if err_norm == 0 else min(SNR_CAP_DB, 20.0 * math.log10(max(ref_norm, 1e-300) / err_norm))
    reasons = []
    if not rel_l2 <= tol.rel_l2:
        reasons.append(f"rel_l2 {rel_l2:.3g} > {tol.rel_l2:.3g}")
    if tol.max_abs is not None and not max_abs <= tol.max_abs:
        reasons.append(f"max_abs {max_abs:.3g} > {tol.max_abs:.3g}")
    if tol.min_cosine is not None and not cosine >= tol.min_cosine:
        reasons.append(f"cosine {cosine:.6f} < {tol.min_cosine}")
    return OutputError(output, max_abs, rel_l2, cosine, snr_db, tol, not reasons, "; ".join(reasons))


@dataclass(frozen=True)
class ParityCase:
    batch: int
    time: int
    source: str
    outputs: tuple[OutputError, ...]
    error: str = ""  # the runner refused or crashed on this case

    @property
    def passed(self) -> bool:
        return not self.error and all(o.passed for o in self.outputs)

    def to_dict(self) -> dict:
        return {
            "batch": self.batch,
            "time": self.time,
            "source": self.source,
            "passed": self.passed,
            "error": self.error,
            "outputs": [o.to_dict() for o in self.outputs],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ParityCase":
        outs = tuple(OutputError.from_dict(o) for o in d["outputs"])
        return cls(d["batch"], d["time"], d["source"], outs, d.get("error", ""))


@dataclass(frozen=True)
class ParityResult:
    model: str
    runtime: str
    precision: str
    artifact: str
    cases: tuple[ParityCase, ...]
    notes: tuple[str, ...] = ()
    cpu: dict = field(default_factory=dict)  # environment.cpu_info of the CPU the candidate ran on ({}: unknown)
    timestep_error: tuple[TimestepError, ...] = ()  # error over t of the longest case, per output (and half)

    @property
    def passed(self) -> bool:
        return bool(self.cases) and all(c.passed for c in self.cases)

    @property
    def growth_flags(self) -> list[str]:
        """Outputs whose error grows over T beyond their limit: said even when every case passes on average."""
        return [te.summary() for te in self.timestep_error if te.flagged]

    @property
    def worst(self) -> OutputError | None:
        errors = [o for c in self.cases for o in c.outputs]
        if not errors:
            return None
        return max(errors, key=lambda o: (not o.passed, o.rel_l2 if o.rel_l2 == o.rel_l2 else math.inf))

    @property
    def failures(self) -> list[str]:
        out = []
        for c in self.cases:
            where = f"batch={c.batch} T={c.time} {c.source}"
            if c.error:
                out.append(f"{where}: {c.error}")
            out += [f"{where} {o.output}: {o.reason}" for o in c.outputs if not o.passed]
        return out

    def to_dict(self) -> dict:
        worst = self.worst
        return {
            "model": self.model,
            "runtime": self.runtime,
            "precision": self.precision,
            "artifact": self.artifact,
            "passed": self.passed,
            "worst": worst.to_dict() if worst else None,
            "notes": list(self.notes),
            "cpu": dict(self.cpu),
            "cases": [c.to_dict() for c in self.cases],
            "timestep_error": [te.to_dict() for te in self.timestep_error],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ParityResult":
        cases = tuple(ParityCase.from_dict(c) for c in d["cases"])
        timesteps = tuple(TimestepError.from_dict(t) for t in d.get("timestep_error", ()))
        return cls(d["model"], d["runtime"], d["precision"], d["artifact"], cases, tuple(d.get("notes", ())),
                   dict(d.get("cpu") or {}), timesteps)


def sweep(
    reference: "Runner",
    candidate: "Runner",
    feeds: Iterable[tuple[int, int, str, dict[str, np.ndarray]]],
    tolerances: Tolerances,
    precision: str,
    *,
    model: str,
    artifact: str,
    notes: tuple[str, ...] = (),
    on_case: Callable[[ParityCase], None] | None = None,
    cpu: dict | None = None,
    time_axes: dict[str, tuple[int, bool]] | None = None,
) -> ParityResult:
    """Run both runners on each (batch, time, source, feed) and compare every output by name.
    time_axes: output -> (its time axis, whether its last axis is a bidirectional [forward | backward] pair); those
    outputs also get their error over t (timesteps.py), kept for the longest case."""
    from .errors import EdgeseqError

    cases, over_time = [], []
    for batch, time, source, feed in feeds:
        expected = reference.infer(feed)
        try:
            got = candidate.infer(feed)
        except EdgeseqError as exc:
            case = ParityCase(batch, time, source, (), error=str(exc))
        else:
            outs = []
            for name, ref in expected.items():
                tol = tolerances.get(precision, name)
                if name not in got:
                    nan = float("nan")
                    outs.append(OutputError(name, nan, nan, nan, nan, tol, False, "output missing"))
                else:
                    outs.append(compare(name, ref, got[name], tol))
                    if name in (time_axes or {}):
                        axis, halves = time_axes[name]
                        over_time += timestep_errors(name, ref, got[name], time_axis=axis, halves=halves,
                                                     tolerance=tol.rel_l2, max_growth=tol.max_growth, batch=batch,
                                                     time=time, source=source)
            case = ParityCase(batch, time, source, tuple(outs))
        cases.append(case)
        if on_case:
            on_case(case)
    return ParityResult(model, candidate.runtime, str(precision), artifact, tuple(cases), notes, dict(cpu or {}),
                        keep_longest(over_time))
