"""Report: JSON is the source of truth; Markdown and terminal tables are rendered from the JSON, never live objects."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from .artifact import Artifact, write_text_atomic
from .bisection import BisectResult
from .errors import ArtifactError, EdgeseqError
from .parity import ParityResult
from .latency import LatencyResult
from .quantize import QuantSummary

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
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    @property
    def passed(self) -> bool:
        return all(p.passed for p in self.parity)

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
            created=d.get("created", ""),
        )

    def save(self, path: str | Path) -> None:
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2, allow_nan=True) + "\n")


def load_report(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"cannot read report {str(path)!r}: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ArtifactError(f"{str(path)!r} is not an edgeseq report (schema {SCHEMA!r} expected)")
    check_report(data, str(path))
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


def check_report(data, label: str) -> None:
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


# ---- rendering (from the JSON dict) -------------------------------------------------------------------------------

COLUMNS = ("format", "precision", "runtime", "parity", "rel L2 (worst)", "max abs", "cosine", "SNR dB",
           "p50 ms", "p90 ms", "x torch eager", "size")


def _fmt(value, spec: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value != value:
        return "nan"
    return format(value, spec)


def _size(n: int | None) -> str:
    if not n:
        return "-"
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def matrix_entries(report: dict) -> list[dict]:
    """One entry per (artifact or reference) x runtime, joining parity and latency by runtime + artifact, with raw
    values (the terminal / Markdown / HTML tables format them; `edgeseq diff` compares them)."""
    lat_by_key = {(x["runtime"], x["artifact"]): x for x in report["latency"]}
    fmt_by_path = {a["path"]: a for a in report["artifacts"]}
    base = next((x for x in report["latency"] if x["runtime"] == "torch-cpu" and not x["artifact"]), None)
    entries, seen = [], set()
    keys = [k for k in lat_by_key if not k[1]]  # the PyTorch rows first: they are the baseline
    keys += [(p["runtime"], p["artifact"]) for p in report["parity"]]
    keys += [k for k in lat_by_key if k not in keys]
    parity_by_key = {(p["runtime"], p["artifact"]): p for p in report["parity"]}
    refs = {(p["runtime"], p["artifact"]): p for p in report.get("references", ())}
    for key in keys:
        if key in seen:
            continue
        seen.add(key)
        runtime, path = key
        par, lat, art = parity_by_key.get(key), lat_by_key.get(key), fmt_by_path.get(path)
        ref = refs.get(key)
        entries.append({
            "format": art["format"] if art else ("torch" if runtime.startswith("torch") else "?"),
            "precision": (art or par or ref or lat or {}).get("precision", "fp32"),
            "runtime": runtime,
            "artifact": path,
            "parity": ("PASS" if par["passed"] else "FAIL") if par else ("info" if ref else "reference"),
            "worst": (par or ref or {}).get("worst") or {},
            "p50_ms": lat["p50_ms"] if lat else None,
            "p90_ms": lat["p90_ms"] if lat else None,
            "min_ms": lat.get("min_ms") if lat else None,
            "emulated": bool(lat and lat.get("emulated")),
            # an emulated row's time is the emulator's: no ratio to eager (nor slowdown in `edgeseq diff`)
            "x_eager": base["p50_ms"] / lat["p50_ms"] if (base and lat and lat["p50_ms"] and not lat.get("emulated"))
            else None,
            "size_bytes": art["size_bytes"] if art else None,
        })
    ran = {path for _, path in keys}
    for art in report["artifacts"]:  # exported but run by nothing here (e.g. a TensorRT plan without an engine)
        if art["path"] not in ran:
            entries.append({"format": art["format"], "precision": art["precision"], "runtime": "(none here)",
                            "artifact": art["path"], "parity": "not run", "worst": {}, "p50_ms": None,
                            "p90_ms": None, "min_ms": None, "emulated": False, "x_eager": None,
                            "size_bytes": art["size_bytes"]})
    return entries


def matrix_rows(report: dict) -> list[dict[str, str]]:
    rows = []
    for e in matrix_entries(report):
        worst = e["worst"]
        emulated = " (emulated)" if e["emulated"] else ""
        rows.append({
            "format": e["format"], "precision": e["precision"], "runtime": e["runtime"], "parity": e["parity"],
            "rel L2 (worst)": _fmt(worst.get("rel_l2"), ".2e"),
            "max abs": _fmt(worst.get("max_abs"), ".2e"),
            "cosine": _fmt(worst.get("cosine"), ".7f"),
            "SNR dB": _fmt(worst.get("snr_db"), ".1f"),
            "p50 ms": _fmt(e["p50_ms"], ".2f") + emulated,
            "p90 ms": _fmt(e["p90_ms"], ".2f") + emulated,
            "x torch eager": _fmt(e["x_eager"], ".2f"),
            "size": _size(e["size_bytes"]),
        })
    return rows


def latency_notes(report: dict) -> list[str]:
    """How a latency row was timed where it is not edgeseq's own end-to-end loop (CUDA events, a device's tool), and
    which rows an emulator timed."""
    from .latency import EMULATED_NOTE

    return [f"latency of {x['runtime']}" + (f" on `{Path(x['artifact']).name}`" if x["artifact"] else "")
            + f": {'; '.join(n for n in (EMULATED_NOTE if x.get('emulated') else '', x.get('note')) if n)}"
            for x in report["latency"] if x.get("note") or x.get("emulated")]


UNSTABLE_P90_OVER_P50 = 2.0


def unstable_notes(report: dict) -> list[str]:
    """Rows whose own spread says the machine was busy while they were timed: a p90 several times the p50. Eager is
    the usual one, and every 'x torch eager' ratio is against it, so the table says so instead of looking exact."""
    out = []
    for x in report.get("latency", ()):
        if x["p50_ms"] and x["p90_ms"] > UNSTABLE_P90_OVER_P50 * x["p50_ms"]:
            what = x["runtime"] + (f" on {Path(x['artifact']).name}" if x["artifact"] else "")
            also = "; every 'x torch eager' ratio is against it" if not x["artifact"] and x["runtime"] == "torch-cpu" \
                else ""
            out.append(f"unstable timing: {what} had p90 {x['p90_ms']:.2f} ms, {x['p90_ms'] / x['p50_ms']:.1f}x its "
                       f"p50 {x['p50_ms']:.2f} ms (a busy machine?){also}; rerun on a quieter machine or with -t 1")
    return out


def bisection_lines(report: dict) -> list[str]:
    """One line per bisected failure: where it ran, the case, and the first module that left tolerance."""
    from .bisection import verdict

    out = []
    for b in report.get("bisections", []):
        where = f"`{Path(b['artifact']).name}` on {b['runtime']}" if b["artifact"] else b["runtime"]
        out.append(f"{where} (bisected at batch={b['batch']} T={b['time']} {b.get('source', 'speech')}): "
                   f"{verdict(b)}")
    return out


def _isa(env: dict) -> str:
    """', int8 kernels x86-avx2' for the environment line (reports written before it was recorded: nothing)."""
    return f", int8 kernels {env['int8_isa']}" if env.get("int8_isa") else ""


def render_markdown(report: dict) -> str:
    model, env = report["model"], report["environment"]
    lat = report["latency"][0] if report["latency"] else None
    lines = [
        f"# edgeseq report: {model['name']}",
        "",
        f"{'PASSED' if report['passed'] else 'FAILED'} - {model.get('parameters', '?'):,} parameters, "
        f"{model.get('flops_at_default_time', 0) / 1e9:.3f} GFLOP at T={model.get('default_time')}; "
        f"{env['cpu']} ({env['cpu_count']} cores{_isa(env)}), python {env['python']}, "
        + ", ".join(f"{k} {v}" for k, v in env["packages"].items()),
        "",
    ]
    if lat:
        lines += [f"Latency at batch={lat['batch']}, T={lat['time']}, threads={lat['threads'] or 'default'}; "
                  "parity against the PyTorch fp32 original over every case below.", ""]
    rows = matrix_rows(report)
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("|" + "|".join("---" for _ in COLUMNS) + "|")
    lines += ["| " + " | ".join(r[c] for c in COLUMNS) + " |" for r in rows]
    notes = latency_notes(report) + unstable_notes(report)
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    for par in report["parity"]:
        cases = par["cases"]
        shapes = sorted({(c["batch"], c["time"]) for c in cases})
        where = f"`{Path(par['artifact']).name}`" if par["artifact"] else "the PyTorch model"
        cpu = par.get("cpu") or {}
        on_cpu = f", CPU {cpu.get('model', '?')} ({cpu.get('int8_isa', '?')})" if cpu else ""
        lines += ["", f"**{par['runtime']}** on {where}: {len(cases)} cases "
                  f"(batch x T: {', '.join(f'{b}x{t}' for b, t in shapes)}; inputs: "
                  f"{', '.join(sorted({c['source'] for c in cases}))}{on_cpu})"]
        failures = [c for c in cases if not c["passed"]]
        for c in failures[:10]:
            why = c["error"] or "; ".join(f"{o['output']}: {o['reason']}" for o in c["outputs"] if not o["passed"])
            lines.append(f"- FAIL batch={c['batch']} T={c['time']} {c['source']}: {why}")
        for note in par.get("notes", []):
            lines.append(f"- note: {note}")
    bisected = bisection_lines(report)
    if bisected:
        lines += ["", "## Which layer diverged", "",
                  "Each failing row, run once more with every module's output compared to the PyTorch original's, in "
                  "the order PyTorch finished them:", ""] + [f"- {line}" for line in bisected]
    for ref in report.get("references", []):
        lines += ["", f"**{ref['runtime']}** (PyTorch's own int8, torch.ao dynamic quantization of Linear + GRU; "
                  f"shown for comparison, not a gate): worst rel L2 {_fmt((ref['worst'] or {}).get('rel_l2'), '.2e')} "
                  f"over {len(ref['cases'])} cases"]
    if report.get("quantization"):
        lines += ["", "## Quantized artifacts against fp32", "",
                  "Size and latency against the fp32 artifact on the same runtime; errors are the worst over every "
                  "case above against the PyTorch fp32 original.", ""]
        lines.append("| " + " | ".join(QUANT_COLUMNS) + " |")
        lines.append("|" + "|".join("---" for _ in QUANT_COLUMNS) + "|")
        lines += ["| " + " | ".join(r[c] for c in QUANT_COLUMNS) + " |" for r in quant_rows(report)]
        for q in report["quantization"]:
            lines.append(f"- `{Path(q['artifact']).name}` on {q['runtime']}: "
                         f"{(q['config'] or {}).get('approach', q['precision'])} settings "
                         f"`{json.dumps(q['config'], sort_keys=True)}`")
    if report["artifacts"]:
        lines += ["", "| artifact | sha256 | parent | size | exporter | export s |", "|---|---|---|---|---|---|"]
        for a in report["artifacts"]:
            parent = f"`{a['parent'][:16]}`" if a.get("parent") else "-"
            lines.append(f"| `{Path(a['path']).name}` | `{a['sha256'][:16]}` | {parent} | {_size(a['size_bytes'])} | "
                         f"{a['exporter']} | {a['export_seconds']:.1f} |")
        for a in report["artifacts"]:
            lines += [f"- `{Path(a['path']).name}`: {note}" for note in a.get("notes", [])]
    return "\n".join(lines) + "\n"


QUANT_COLUMNS = ("artifact", "runtime", "size x fp32", "p50 x fp32", "max abs", "rel L2", "cosine", "SNR dB",
                 "torch int8 rel L2", "still float")


def _ops(ops: dict) -> str:
    return ", ".join(f"{k} x{v}" if v > 1 else k for k, v in sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))) or "-"


def quant_rows(report: dict) -> list[dict[str, str]]:
    rows = []
    for q in report.get("quantization", []):
        rows.append({
            "artifact": Path(q["artifact"]).name,
            "runtime": q["runtime"],
            "size x fp32": _fmt(q.get("size_ratio"), ".2f"),
            "p50 x fp32": _fmt(q.get("latency_ratio"), ".2f"),
            "max abs": _fmt(q["max_abs"], ".2e"),
            "rel L2": _fmt(q["rel_l2"], ".2e"),
            "cosine": _fmt(q["cosine"], ".6f"),
            "SNR dB": _fmt(q["snr_db"], ".1f"),
            "torch int8 rel L2": _fmt(q.get("torch_int8_rel_l2"), ".2e"),
            "still float": _ops(q.get("float_ops", {})),
        })
    return rows


TERMINAL_COLUMNS = ("format", "precision", "runtime", "parity", "rel L2 (worst)", "max abs", "p50 ms",
                    "x torch eager", "size")


def print_table(report: dict, console=None) -> None:
    from rich.console import Console

    console = console or Console()
    matrix = matrix_rows(report)
    console.print(fitted_table(f"edgeseq: {report['model']['name']}", TERMINAL_COLUMNS, matrix, console.width,
                               text=("format", "precision", "runtime"),
                               styles=["red" if row["parity"] == "FAIL" else None for row in matrix]))
    for note in unstable_notes(report):
        console.print(note, style="yellow", highlight=False)
    rows = quant_rows(report)
    if rows:
        columns = ("artifact", "runtime", "size x fp32", "p50 x fp32", "rel L2", "torch int8 rel L2", "still float")
        console.print(fitted_table("quantized vs fp32 (same runtime)", columns, rows, console.width,
                                   text=("artifact", "runtime", "still float"), wrap=("still float",)))


LOW_PRIORITY = ("cosine", "SNR dB", "size", "max abs", "torch int8 rel L2", "size x fp32")  # left out first


def fitted_table(title: str, columns, rows: list[dict], width: int, *, text=(), wrap=(), styles=None,
                 drop=LOW_PRIORITY):
    """A rich Table that never cuts or splits a number (rich's own shrinking cut them to '1…', folding split them
    into '10.9' over '6').

    When it fits, the usual boxed table. Narrower: a borderless one whose headers wrap at their spaces and whose text
    cells (`text`: runtime and artifact names) fold, widest first, while every other column keeps its numbers whole
    on one line. `wrap`: text columns that wrap at spaces at any width (lists of op types), never narrower than their
    longest word. Still too narrow: the `drop` columns present leave, in that order, and a line under the table
    names them. Narrower even than that, rich cuts numbers with '…' (never folds them)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    def longest_word(c):
        return max(len(w) for cell in [c, *(r[c] for r in rows)] for w in cell.split() or [""])

    natural = {c: max([len(c)] + [len(r[c]) for r in rows]) for c in columns}
    least = {c: longest_word(c) if c in wrap else 4 if c in text else
             max([len(w) for w in c.split()] + [len(r[c]) for r in rows]) for c in columns}
    gap = 3  # boxed: a border and two spaces of padding per column (and one more border at the end)
    shown, hidden = list(columns), []
    if sum(least[c] if c in wrap else natural[c] for c in columns) + gap * len(columns) + 1 <= width:
        table = Table(title=title, show_lines=False)
        for c in columns:
            table.add_column(c, no_wrap=c not in wrap, justify="left" if c in text else "right")
    else:
        for c in [c for c in drop if c in columns]:
            if sum(least[c] for c in shown) + len(shown) - 1 <= width:  # borderless: one space between columns
                break
            shown.remove(c)
            hidden.append(c)
        flexible = [c for c in shown if c in text or c in wrap]
        widths = {c: natural[c] if c in flexible else least[c] for c in shown}
        room = width - (len(shown) - 1)
        while flexible and sum(widths.values()) > room:
            widest = max(flexible, key=lambda c: widths[c] - least[c])
            if widths[widest] <= least[widest]:
                break  # a terminal too narrow even for the numbers: rich cuts them ('…'), never folds them
            widths[widest] -= 1
        caption = f"(left out to fit {width} columns: {', '.join(hidden)})" if hidden else None
        table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, padding=0, caption=caption,
                      caption_justify="left")
        for c in shown:
            table.add_column(c, width=widths[c], overflow="fold", justify="left" if c in text else "right")
    for i, row in enumerate(rows):
        cells = [row[c] if c in text or c in wrap else Text(row[c], no_wrap=True, overflow="ellipsis") for c in shown]
        table.add_row(*cells, style=styles[i] if styles else None)
    return table


# ---- HTML with plots -------------------------------------------------------------------------------------------------


def _png(fig) -> str:
    import base64
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def plots(report: dict) -> dict[str, str]:
    """Base64 PNGs: latency per runtime (p50 bar, p90/p99 whiskers), error vs T per runtime, size per artifact."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    out: dict[str, str] = {}
    lat = report["latency"]
    if lat:
        labels = [f"{x['runtime']}\n{x['precision']}" + (f"\n{Path(x['artifact']).suffix}" if x["artifact"] else "")
                  for x in lat]
        p50 = [x["p50_ms"] for x in lat]
        fig, ax = plt.subplots(figsize=(max(4, 1.6 * len(lat)), 3.2))
        ax.bar(range(len(lat)), p50, color="#4c72b0")
        ax.errorbar(range(len(lat)), p50, yerr=[[0] * len(lat), [x["p90_ms"] - x["p50_ms"] for x in lat]],
                    fmt="none", ecolor="black", capsize=4, label="p90")
        ax.scatter(range(len(lat)), [x["p99_ms"] for x in lat], marker="_", color="red", s=200, label="p99", zorder=3)
        ax.set_xticks(range(len(lat)), labels, fontsize=8)
        ax.set_ylabel("ms")
        ax.set_title(f"latency, batch {lat[0]['batch']}, T={lat[0]['time']}")
        ax.legend(fontsize=8)
        out["latency"] = _png(fig)
        plt.close(fig)
    if report["parity"]:
        fig, ax = plt.subplots(figsize=(8.5, 3.6))
        colors: dict[str, str] = {}  # one color per precision: a row's line and its tolerance match
        palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        styles = ["-", "--", ":", "-."]
        runtimes = sorted({p["runtime"] for p in report["parity"]})
        all_t: set[int] = set()
        for par in report["parity"]:
            worst: dict[int, float] = {}
            for c in par["cases"]:
                for o in c["outputs"]:
                    if o["rel_l2"] == o["rel_l2"]:
                        worst[c["time"]] = max(worst.get(c["time"], 0.0), o["rel_l2"])
            if worst:
                ts = sorted(worst)
                all_t.update(ts)
                color = colors.setdefault(par["precision"], palette[len(colors) % len(palette)])
                ax.plot(ts, [max(worst[t], 1e-12) for t in ts], marker="o", color=color,
                        linestyle=styles[runtimes.index(par["runtime"]) % len(styles)],
                        label=f"{par['runtime']} {par['precision']}")
        tols = {(p["precision"], o["tolerance"]["rel_l2"]) for p in report["parity"] for c in p["cases"]
                for o in c["outputs"]}
        for precision, tol in sorted(tols, key=lambda pt: pt[1]):
            ax.axhline(tol, linestyle=(0, (4, 3)), linewidth=1, color=colors.get(precision, "grey"), alpha=0.7,
                       label=f"{precision} tolerance {tol:g}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        if all_t:  # the sweep's own lengths as ticks, not 2x10^1
            ax.set_xticks(sorted(all_t), [str(t) for t in sorted(all_t)])
            ax.minorticks_off()
            ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_ylabel("worst relative L2")
        ax.set_title("error against the PyTorch original (dashed: tolerances)")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        fig.tight_layout()
        out["error"] = _png(fig)
        plt.close(fig)
    if report["artifacts"]:
        fig, ax = plt.subplots(figsize=(max(4, 1.4 * len(report["artifacts"])), 3.0))
        names = [Path(a["path"]).name for a in report["artifacts"]]
        ax.bar(range(len(names)), [a["size_bytes"] / 1e6 for a in report["artifacts"]], color="#55a868")
        ax.set_xticks(range(len(names)), names, fontsize=7, rotation=20)
        ax.set_ylabel("MB")
        ax.set_title("artifact size")
        out["size"] = _png(fig)
        plt.close(fig)
    return out


def render_html(report: dict) -> str:
    """A self-contained page: the matrix table, failures and embedded plots (no external files or scripts)."""
    import html

    rows = matrix_rows(report)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join(
        "<tr class='{}'>".format("fail" if r["parity"] == "FAIL" else "")
        + "".join(f"<td>{html.escape(r[c])}</td>" for c in COLUMNS) + "</tr>" for r in rows)
    failures = [
        f"<li>{html.escape(p['runtime'])} batch={c['batch']} T={c['time']} {html.escape(c['source'])}: "
        + html.escape(c["error"] or "; ".join(o["reason"] for o in c["outputs"] if not o["passed"])) + "</li>"
        for p in report["parity"] for c in p["cases"] if not c["passed"]]
    images = "".join(f"<figure><img alt='{k}' src='data:image/png;base64,{v}'></figure>"
                     for k, v in plots(report).items())
    env = report["environment"]
    status = "PASSED" if report["passed"] else "FAILED"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>edgeseq report: {html.escape(report['model']['name'])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} tr.fail td{{background:#fdd}}
figure{{display:inline-block;margin:1em}} .PASSED{{color:#070}} .FAILED{{color:#b00}}</style></head><body>
<h1>edgeseq report: {html.escape(report['model']['name'])} <span class="{status}">{status}</span></h1>
<p>{html.escape(env['cpu'])} ({env['cpu_count']} cores{html.escape(_isa(env))}), python {html.escape(env['python'])},
{html.escape(', '.join(f'{k} {v}' for k, v in env['packages'].items()))}; created {html.escape(report['created'])}</p>
<table><tr>{head}</tr>{body}</table>
{'<ul>' + ''.join(f'<li>{html.escape(n)}</li>' for n in latency_notes(report)) + '</ul>' if latency_notes(report) else ''}
{'<h2>Failures</h2><ul>' + ''.join(failures[:50]) + '</ul>' if failures else ''}
{'<h2>Which layer diverged</h2><ul>' + ''.join(f'<li>{html.escape(x)}</li>' for x in bisection_lines(report)) + '</ul>' if bisection_lines(report) else ''}
{images}
</body></html>
"""


def html_available() -> bool:
    """report.html needs matplotlib (the `report` extra) for its plots."""
    from ._lazy import installed

    return installed("matplotlib")


def write_html(report: dict, path: str | Path) -> bool:
    """report.html beside the JSON; False (and no file) when matplotlib is not installed."""
    if not html_available():
        return False
    write_text_atomic(path, render_html(report))
    return True
