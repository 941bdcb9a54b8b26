"""Compare two matrix reports (report.json) row by row: what a model change, an exporter upgrade or a new runtime
did to parity, error, latency and size. Works on the saved JSON alone, like every other rendering.

A row is a (format, precision, runtime, artifact file name) of the matrix. Regressions, which make `edgeseq diff`
exit 1: a row that passed parity and now fails; with --max-slowdown R, a row that got more than R times slower;
with --max-error-growth G, a passing row whose worst rel L2 grew by more than G times. Rows only in one report are
listed (new / gone) but are not regressions: a runtime can be missing on one machine.

Slower is judged three ways, and a row regresses only when it is slower by all of them: its p50 relative to PyTorch
eager's p50 in the same report (the matrix times both in one run, so a machine that was busier during one run moves
both and the ratio stays put), its own p50, and its own best run (min, what load disturbs least). One measure alone
misleads on a shared machine: eager itself is the noisiest row (p90 several times its p50 under load), and raw
milliseconds move with the load. Latency is only judged when both reports come from the same machine and thread
setting, and never for the informative rows (PyTorch's own int8).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from .._checks import ratio
from ..errors import InputError
from .record import validate_report
from .rows import matrix_entries


@dataclass(frozen=True)
class RowDiff:
    format: str
    precision: str
    runtime: str
    artifact: str  # file name ("" for the PyTorch rows)
    status: str  # "same", "regressed", "improved", "new", "gone"
    old_parity: str | None
    new_parity: str | None
    old_rel_l2: float | None
    new_rel_l2: float | None
    old_p50_ms: float | None
    new_p50_ms: float | None
    old_size_bytes: int | None
    new_size_bytes: int | None
    reasons: tuple[str, ...] = ()
    slowdown: float | None = None  # the median of the three slowdown measures (see the module doc); > 1 is slower

    def to_dict(self) -> dict:
        d = asdict(self)
        d["reasons"] = list(self.reasons)
        return d


@dataclass(frozen=True)
class ReportDiff:
    model: str
    old: str  # the reports' paths, as given
    new: str
    latency_comparable: bool
    rows: tuple[RowDiff, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def regressed(self) -> bool:
        return any(r.status == "regressed" for r in self.rows)

    def to_dict(self) -> dict:
        return {"model": self.model, "old": self.old, "new": self.new, "regressed": self.regressed,
                "latency_comparable": self.latency_comparable, "rows": [r.to_dict() for r in self.rows],
                "notes": list(self.notes)}


def _key(entry: dict) -> tuple[str, str, str, str]:
    return entry["format"], entry["precision"], entry["runtime"], Path(entry["artifact"]).name if entry["artifact"] else ""


def _machine(report: dict) -> tuple:
    env = report.get("environment", {})
    return env.get("machine"), env.get("cpu"), env.get("cpu_count"), env.get("gpu"), env.get("threads")


def _int8_isa(report: dict) -> str | None:
    """The report's CPU int8 kernel family (reports written before it was recorded: from their CPU flags)."""
    from ..environment import int8_isa

    env = report.get("environment", {})
    if env.get("int8_isa"):
        return env["int8_isa"]
    if "cpu_flags" in env and env.get("machine"):
        return int8_isa(env["cpu_flags"], env["machine"])
    return None


def _has_int8(*reports: dict) -> bool:
    return any(str(a.get("precision", "")).startswith("int8") for r in reports for a in r.get("artifacts", ()))


def diff_reports(old: dict, new: dict, *, max_slowdown: float | None = None, max_error_growth: float | None = None,
                 old_label: str = "old", new_label: str = "new") -> ReportDiff:
    """Row-by-row comparison of two report dicts (load_report's), old first."""
    validate_report(old, old_label)  # a dict edited by hand (or by a script) is one line naming the key, not a KeyError
    validate_report(new, new_label)
    for name, value in (("--max-slowdown", max_slowdown), ("--max-error-growth", max_error_growth)):
        if value is not None:
            ratio(value, name)
    old_model, new_model = old["model"]["name"], new["model"]["name"]
    if old_model != new_model:
        raise InputError(f"the reports are of different models ({old_model!r} and {new_model!r})")
    comparable = _machine(old) == _machine(new)
    notes = [] if comparable else [
        "the reports come from different machines or thread settings: latency is shown, not judged"]
    isas = _int8_isa(old), _int8_isa(new)
    if None not in isas and isas[0] != isas[1] and _has_int8(old, new):
        notes.append(f"the reports come from CPUs with different int8 kernels ({isas[0]} and {isas[1]}): int8 "
                     "parity is a property of artifact + runtime + CPU, so int8 rows may differ for that reason alone")
    before = {_key(e): e for e in matrix_entries(old)}
    after = {_key(e): e for e in matrix_entries(new)}
    rows = []
    for key in list(before) + [k for k in after if k not in before]:
        a, b = before.get(key), after.get(key)
        rows.append(_row(key, a, b, comparable and key[2] != "torch-cpu", max_slowdown, max_error_growth))
    return ReportDiff(old_model, old_label, new_label, comparable, tuple(rows), tuple(notes))


def _row(key, a: dict | None, b: dict | None, judge_latency: bool, max_slowdown, max_error_growth) -> RowDiff:
    """judge_latency: same machine, and not the eager reference itself (every ratio is against it)."""
    def rel(e):
        return (e or {}).get("worst", {}).get("rel_l2") if e else None

    values = {
        "old_parity": a["parity"] if a else None, "new_parity": b["parity"] if b else None,
        "old_rel_l2": rel(a), "new_rel_l2": rel(b),
        "old_p50_ms": a["p50_ms"] if a else None, "new_p50_ms": b["p50_ms"] if b else None,
        "old_size_bytes": a["size_bytes"] if a else None, "new_size_bytes": b["size_bytes"] if b else None,
    }
    if a is None or b is None:
        return RowDiff(*key, status="new" if a is None else "gone", **values)
    worse, better = [], []
    if a["parity"] == "PASS" and b["parity"] == "FAIL":
        worse.append("parity now fails")
    elif a["parity"] == "FAIL" and b["parity"] == "PASS":
        better.append("parity now passes")
    old_err, new_err = values["old_rel_l2"], values["new_rel_l2"]
    if (max_error_growth is not None and b["parity"] == "PASS" and old_err and new_err is not None
            and new_err > old_err * max_error_growth):
        worse.append(f"worst rel L2 x{new_err / old_err:.1f} ({old_err:.2e} -> {new_err:.2e})")
    ratios = _slowdowns(a, b) if a["parity"] != "reference" else {}  # the eager row is what x_eager is against
    slowdown = sorted(ratios.values())[len(ratios) // 2] if ratios else None
    if judge_latency and "info" not in (a["parity"], b["parity"]) and max_slowdown is not None and ratios:
        said = ", ".join(f"{name} x{r:.2f}" for name, r in ratios.items())
        if min(ratios.values()) > max_slowdown:
            worse.append(f"slower by every measure ({said})")
        elif max(ratios.values()) * max_slowdown < 1.0:
            better.append(f"faster by every measure ({said})")
    status = "regressed" if worse else ("improved" if better else "same")
    return RowDiff(*key, status=status, reasons=tuple(worse or better), slowdown=slowdown, **values)


def _slowdowns(a: dict, b: dict) -> dict[str, float]:
    """How many times slower the new row is, by each measure both reports have (> 1 is slower); none for a row an
    emulator timed."""
    out = {}
    if a.get("emulated") or b.get("emulated"):
        return out
    if a["x_eager"] and b["x_eager"]:
        out["relative to eager"] = a["x_eager"] / b["x_eager"]  # x_eager = eager p50 / row p50, from one run
    for key, name in (("p50_ms", "p50"), ("min_ms", "min")):
        if a.get(key) and b.get(key):
            out[f"{name} {a[key]:.3f} -> {b[key]:.3f} ms"] = b[key] / a[key]
    return out


def render_diff(diff: dict) -> list[list[str]]:
    """Table rows (header first) from a ReportDiff dict: what the CLI prints and the JSON carries."""
    def num(v, spec):
        return "-" if v is None else format(v, spec)

    def mb(n):
        return "-" if not n else f"{n / 1e6:.2f} MB"

    out = [["status", "format", "precision", "runtime", "artifact", "parity", "rel L2", "p50 ms", "slowdown", "size",
            "why"]]
    for r in diff["rows"]:
        parity = r["old_parity"] if r["old_parity"] == r["new_parity"] else \
            f"{r['old_parity'] or '-'} -> {r['new_parity'] or '-'}"  # a new / gone row has no parity on one side
        out.append([
            r["status"], r["format"], r["precision"], r["runtime"], r["artifact"] or "-", parity,
            f"{num(r['old_rel_l2'], '.2e')} -> {num(r['new_rel_l2'], '.2e')}",
            f"{num(r['old_p50_ms'], '.3f')} -> {num(r['new_p50_ms'], '.3f')}",
            num(r["slowdown"], ".2f"),
            mb(r["new_size_bytes"]) if r["old_size_bytes"] == r["new_size_bytes"]
            else f"{mb(r['old_size_bytes'])} -> {mb(r['new_size_bytes'])}",
            "; ".join(r["reasons"]),
        ])
    return out


def regression_lines(diff: dict) -> list[str]:
    """One line per regressed row of a ReportDiff's dict ('onnxruntime-cpu cbhg.fp32.onnx: p50 1.4x ...'): what
    a recipe build prints and its JUnit failure holds."""
    return [f"{r['runtime']} {r['artifact'] or 'torch'}: {'; '.join(r['reasons'])}"
            for r in diff["rows"] if r["status"] == "regressed"]


def render_diff_markdown(diff: dict) -> str:
    """The same table as Markdown, for a pull-request comment or a CI summary."""
    header, *rows = render_diff(diff)
    regressed = sum(1 for r in diff["rows"] if r["status"] == "regressed")
    verdict = f"**{regressed} of {len(rows)} rows regressed**" if regressed else f"no regressions in {len(rows)} rows"
    lines = [f"### edgeseq diff: {diff['model']}", "", f"`{diff['old']}` -> `{diff['new']}`: {verdict}", "",
             "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    lines += [f"- note: {note}" for note in diff.get("notes", [])]
    return "\n".join(lines) + "\n"
