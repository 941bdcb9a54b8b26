"""The report record: what one matrix run found, saved as JSON. The JSON is the source of truth; every renderer
(Markdown, terminal, HTML, JUnit, diff) reads the dict, never the live objects."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..artifact import Artifact, write_text_atomic
from ..bisection import BisectResult
from ..errors import ArtifactError, EdgeseqError
from ..latency import LatencyResult
from ..parity import ParityResult
from ..quantize import QuantSummary
from ..padding import PaddingResult
from ..streaming import StreamResult

SCHEMA = "edgeseq.report/1"


@dataclass(frozen=True)
class Report:
    model: dict
    environment: dict
    artifacts: tuple[Artifact, ...] = ()
    parity: tuple[ParityResult, ...] = ()
    latency: tuple[LatencyResult, ...] = ()
    references: tuple[ParityResult, ...] = ()  # informative comparisons that do not gate (PyTorch's own int8)
    quantization: tuple[QuantSummary, ...] = ()
    bisections: tuple[BisectResult, ...] = ()  # one per failed parity row: the first module that diverged
    streams: tuple[StreamResult, ...] = ()  # a streaming model's chunked-vs-full gate, per runtime
    padding: tuple[PaddingResult, ...] = ()  # padded ragged batches against each row alone, per artifact row
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    @property
    def passed(self) -> bool:
        return all(p.passed for p in self.parity) and all(s.passed for s in self.streams)

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "created": self.created,
            "passed": self.passed,
            "model": self.model,
            "environment": self.environment,
            "artifacts": [a.to_dict() for a in self.artifacts],
            "parity": [p.to_dict() for p in self.parity],
            "latency": [lat.to_dict() for lat in self.latency],
            "references": [p.to_dict() for p in self.references],
            "quantization": [q.to_dict() for q in self.quantization],
            "bisections": [b.to_dict() for b in self.bisections],
            "streams": [x.to_dict() for x in self.streams],
            "padding": [x.to_dict() for x in self.padding],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Report":
        return cls(
            model=d["model"],
            environment=d["environment"],
            artifacts=tuple(Artifact.from_dict(a) for a in d.get("artifacts", ())),
            parity=tuple(ParityResult.from_dict(p) for p in d.get("parity", ())),
            latency=tuple(LatencyResult.from_dict(x) for x in d.get("latency", ())),
            references=tuple(ParityResult.from_dict(p) for p in d.get("references", ())),
            quantization=tuple(QuantSummary.from_dict(q) for q in d.get("quantization", ())),
            bisections=tuple(BisectResult.from_dict(b) for b in d.get("bisections", ())),
            streams=tuple(StreamResult.from_dict(x) for x in d.get("streams", ())),
            padding=tuple(PaddingResult.from_dict(x) for x in d.get("padding", ())),
            created=d.get("created", ""),
        )

    def save(self, path: str | Path) -> None:
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2, allow_nan=True) + "\n")


def load_report(path: str | Path) -> dict:
    """The report dict saved at `path`, checked: a file that is not a report is one ArtifactError line."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"cannot read report {str(path)!r}: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ArtifactError(f"{str(path)!r} is not an edgeseq report (schema {SCHEMA!r} expected)")
    validate_report(data, str(path))
    try:
        Report.from_dict(data)
    except EdgeseqError as exc:  # e.g. a stored tolerance that makes no sense (parity.Tolerance)
        raise ArtifactError(f"report {str(path)!r}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ArtifactError(f"report {str(path)!r} is malformed: {exc!r}") from None
    return data


_NUMBER = (int, float)
_OPTIONAL_NUMBER = (int, float, type(None))
# what the tables, `edgeseq diff`, a recipe's [baseline] and manifest read from a report: checked on loading, so a
# hand-edited or truncated report is one line naming the key, not a KeyError after a whole build
_REPORT_KEYS = {"model": dict, "environment": dict, "passed": bool, "artifacts": list, "parity": list,
                "latency": list}
_ROW_KEYS = {
    "artifacts": {"path": str, "format": str, "precision": str, "size_bytes": int, "sha256": str},
    "parity": {"runtime": str, "artifact": str, "precision": str, "passed": bool, "cases": list,
               "worst": (dict, type(None))},
    "references": {"runtime": str, "artifact": str, "precision": str, "worst": (dict, type(None))},
    "latency": {"runtime": str, "artifact": str, "precision": str, "p50_ms": _NUMBER, "p90_ms": _NUMBER,
                "p99_ms": _NUMBER},
}
_WORST_KEYS = ("rel_l2", "max_abs", "cosine", "snr_db")


def _kind(wanted: tuple) -> str:
    names = {str: "a string", int: "an integer", bool: "true or false", list: "a list", dict: "an object",
             type(None): "null"}
    if float in wanted:
        return " or ".join(["a number"] + [names[t] for t in wanted if t not in (int, float)])
    return " or ".join(names[t] for t in wanted)


def _key(where: str, key: str) -> str:
    """A top-level key quoted ('model'), a nested one as its path (parity[0].passed), never a mix."""
    return f"{where}{key}" if where else repr(key)


def validate_report(data, label: str) -> None:
    """Raise a one-line ArtifactError naming the report and the key when `data` lacks what a report dict has."""
    def need(table, key, want, where):
        if key not in table:
            raise ArtifactError(f"report {label!r}: {_key(where, key)} is missing")
        value = table[key]
        wanted = want if isinstance(want, tuple) else (want,)
        if not isinstance(value, wanted) or (isinstance(value, bool) and bool not in wanted):
            raise ArtifactError(f"report {label!r}: {_key(where, key)} must be {_kind(wanted)}, got "
                                f"{json.dumps(value)[:40]}")
        return value

    if not isinstance(data, dict):
        raise ArtifactError(f"report {label!r} must be a JSON object, got {type(data).__name__}")
    for key, want in _REPORT_KEYS.items():
        need(data, key, want, "")
    need(data["model"], "name", str, "model.")
    for section, keys in _ROW_KEYS.items():
        rows = need(data, section, list, "") if section in data or section != "references" else []
        for i, row in enumerate(rows):
            where = f"{section}[{i}]."
            if not isinstance(row, dict):
                raise ArtifactError(f"report {label!r}: {section}[{i}] must be an object")
            for key, want in keys.items():
                need(row, key, want, where)
            for key in _WORST_KEYS if isinstance(row.get("worst"), dict) else ():
                if key in row["worst"]:
                    need(row["worst"], key, _OPTIONAL_NUMBER, f"{where}worst.")
