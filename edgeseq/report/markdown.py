"""report.md: the matrix, failures, notes, bisections and quantization summary as Markdown, from the report dict."""

from __future__ import annotations

import json
from pathlib import Path

from .rows import (
    COLUMNS,
    QUANT_COLUMNS,
    bisection_lines,
    failure_lines,
    fmt_size,
    growth_notes,
    padding_line,
    fmt_value,
    isa_suffix,
    latency_notes,
    matrix_rows,
    quant_rows,
    STREAM_COLUMNS,
    stream_rows,
    timestep_line,
    unstable_notes,
)


def _table(columns, rows: list[dict[str, str]]) -> list[str]:
    return (["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
            + ["| " + " | ".join(r[c] for c in columns) + " |" for r in rows])


def render_markdown(report: dict) -> str:
    model, env = report["model"], report["environment"]
    lat = report["latency"][0] if report["latency"] else None
    lines = [
        f"# edgeseq report: {model['name']}",
        "",
        f"{'PASSED' if report['passed'] else 'FAILED'} - {model.get('parameters', '?'):,} parameters, "
        f"{model.get('flops_at_default_time', 0) / 1e9:.3f} GFLOP at T={model.get('default_time')}; "
        f"{env['cpu']} ({env['cpu_count']} cores{isa_suffix(env)}), python {env['python']}, "
        + ", ".join(f"{k} {v}" for k, v in env["packages"].items()),
        "",
    ]
    if lat:
        lines += [f"Latency at batch={lat['batch']}, T={lat['time']}, threads={lat['threads'] or 'default'}; "
                  "parity against the PyTorch fp32 original over every case below.", ""]
    lines += _table(COLUMNS, matrix_rows(report))
    notes = latency_notes(report) + unstable_notes(report) + growth_notes(report)
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    for par in report["parity"]:
        lines += ["", _parity_heading(par)]
        lines += [f"- FAIL {line}" for line in failure_lines(par)[:10]]
        lines += [f"- note: {note}" for note in par.get("notes", [])]
        lines += [f"- {line}" for line in (timestep_line(par), padding_line(report, par)) if line]
    streamed = stream_rows(report)
    if streamed:
        lines += ["", "## Streaming", "",
                  f"Fed chunk by chunk with the state carried, against one PyTorch call over T="
                  f"{report['streams'][0]['cases'][0]['time']} (batch {report['streams'][0]['batch']}); a later "
                  "call's cost over its frames' share of one full call on the same runtime.", ""]
        lines += _table(STREAM_COLUMNS, streamed)
    bisected = bisection_lines(report)
    if bisected:
        lines += ["", "## Which layer diverged", "",
                  "Each failing row, run once more with every module's output compared to the PyTorch original's, in "
                  "the order PyTorch finished them:", ""] + [f"- {line}" for line in bisected]
    for ref in report.get("references", []):
        lines += ["", f"**{ref['runtime']}** (PyTorch's own int8, torch.ao dynamic quantization of Linear + GRU; "
                  f"shown for comparison, not a gate): worst rel L2 "
                  f"{fmt_value((ref['worst'] or {}).get('rel_l2'), '.2e')} over {len(ref['cases'])} cases"]
    if report.get("quantization"):
        lines += ["", "## Quantized artifacts against fp32", "",
                  "Size and latency against the fp32 artifact on the same runtime; errors are the worst over every "
                  "case above against the PyTorch fp32 original.", ""]
        lines += _table(QUANT_COLUMNS, quant_rows(report))
        for q in report["quantization"]:
            lines.append(f"- `{Path(q['artifact']).name}` on {q['runtime']}: "
                         f"{(q['config'] or {}).get('approach', q['precision'])} settings "
                         f"`{json.dumps(q['config'], sort_keys=True)}`")
    if report["artifacts"]:
        lines += ["", "| artifact | sha256 | parent | size | exporter | export s |", "|---|---|---|---|---|---|"]
        for a in report["artifacts"]:
            parent = f"`{a['parent'][:16]}`" if a.get("parent") else "-"
            lines.append(f"| `{Path(a['path']).name}` | `{a['sha256'][:16]}` | {parent} | {fmt_size(a['size_bytes'])} "
                         f"| {a['exporter']} | {a['export_seconds']:.1f} |")
        for a in report["artifacts"]:
            lines += [f"- `{Path(a['path']).name}`: {note}" for note in a.get("notes", [])]
    return "\n".join(lines) + "\n"


def _parity_heading(par: dict) -> str:
    """'**runtime** on `file`: N cases (batch x T: ...; inputs: ...)' for one parity row."""
    cases = par["cases"]
    shapes = sorted({(c["batch"], c["time"]) for c in cases})
    where = f"`{Path(par['artifact']).name}`" if par["artifact"] else "the PyTorch model"
    cpu = par.get("cpu") or {}
    on_cpu = f", CPU {cpu.get('model', '?')} ({cpu.get('int8_isa', '?')})" if cpu else ""
    return (f"**{par['runtime']}** on {where}: {len(cases)} cases (batch x T: "
            f"{', '.join(f'{b}x{t}' for b, t in shapes)}; inputs: {', '.join(sorted({c['source'] for c in cases}))}"
            f"{on_cpu})")
