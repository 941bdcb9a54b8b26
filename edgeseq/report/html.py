"""report.html: a self-contained page (the matrix, failures, notes and embedded PNG plots) from the report dict.
The plots need matplotlib (the `report` extra), imported only here and only when a page is written."""

from __future__ import annotations

from pathlib import Path

from ..artifact import write_text_atomic
from .rows import (COLUMNS, STREAM_COLUMNS, bisection_lines, growth_notes, isa_suffix, latency_notes, matrix_rows,
                   padding_summary, stream_rows)


def _png(fig) -> str:
    import base64
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _latency_plot(plt, lat: list[dict]) -> str:
    """p50 bars per runtime with p90 whiskers and p99 ticks."""
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
    try:
        return _png(fig)
    finally:
        plt.close(fig)


def _error_plot(plt, parity: list[dict]) -> str:
    """Worst rel L2 against T, one line per parity row, with each precision's tolerance dashed in its color."""
    fig, ax = plt.subplots(figsize=(8.5, 3.6))
    colors: dict[str, str] = {}  # one color per precision: a row's line and its tolerance match
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    runtimes = sorted({p["runtime"] for p in parity})
    all_t: set[int] = set()
    for par in parity:
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
    tols = {(p["precision"], o["tolerance"]["rel_l2"]) for p in parity for c in p["cases"] for o in c["outputs"]}
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
    try:
        return _png(fig)
    finally:
        plt.close(fig)


def _timestep_plot(plt, parity: list[dict]) -> str | None:
    """Error against t for the longest case of each row (forward and backward halves apart), flagged rows bold."""
    curves = [(p, t) for p in parity for t in p.get("timestep_error", ())]
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(8.5, 3.6))
    for par, te in curves:
        points = len(te["curve"])
        xs = [(i + 0.5) * te["time"] / points for i in range(points)]
        half = "" if te["half"] == "all" else f" {te['half']}"
        ax.plot(xs, [max(v, 1e-12) for v in te["curve"]], linewidth=2.5 if te.get("flagged") else 1,
                label=f"{par['runtime']} {par['precision']} {te['output']}{half} x{te['growth']:.2f}"
                + (" FLAGGED" if te.get("flagged") else ""))
    ax.set_yscale("log")
    ax.set_xlabel("frame t (longest case of each row)")
    ax.set_ylabel("error at t / RMS frame norm")
    ax.set_title("error over time (x: growth of the error, end over start of the recurrence)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    try:
        return _png(fig)
    finally:
        plt.close(fig)


def _size_plot(plt, artifacts: list[dict]) -> str:
    fig, ax = plt.subplots(figsize=(max(4, 1.4 * len(artifacts)), 3.0))
    names = [Path(a["path"]).name for a in artifacts]
    ax.bar(range(len(names)), [a["size_bytes"] / 1e6 for a in artifacts], color="#55a868")
    ax.set_xticks(range(len(names)), names, fontsize=7, rotation=20)
    ax.set_ylabel("MB")
    ax.set_title("artifact size")
    try:
        return _png(fig)
    finally:
        plt.close(fig)


def plots(report: dict) -> dict[str, str]:
    """Base64 PNGs: latency per runtime (p50 bar, p90/p99 whiskers), error vs T per runtime, size per artifact."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    out: dict[str, str] = {}
    if report["latency"]:
        out["latency"] = _latency_plot(plt, report["latency"])
    if report["parity"]:
        out["error"] = _error_plot(plt, report["parity"])
        over_t = _timestep_plot(plt, report["parity"])
        if over_t:
            out["error over time"] = over_t
    if report["artifacts"]:
        out["size"] = _size_plot(plt, report["artifacts"])
    return out


def render_html(report: dict) -> str:
    """A self-contained page: the matrix table, failures and embedded plots (no external files or scripts)."""
    import html

    rows = matrix_rows(report)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join(
        "<tr class='{}'>".format("fail" if r["parity"] == "FAIL" else "")
        + "".join(f"<td>{html.escape(r[c])}</td>" for c in COLUMNS) + "</tr>" for r in rows)
    streamed = stream_rows(report)
    stream_table = ("<h2>Streaming</h2><table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in STREAM_COLUMNS)
                    + "</tr>" + "".join(
                        "<tr class='{}'>".format("fail" if r["streamed vs full"] == "FAIL" else "")
                        + "".join(f"<td>{html.escape(r[c])}</td>" for c in STREAM_COLUMNS) + "</tr>"
                        for r in streamed) + "</table>") if streamed else ""
    failures = [
        f"<li>{html.escape(p['runtime'])} batch={c['batch']} T={c['time']} {html.escape(c['source'])}: "
        + html.escape(c["error"] or "; ".join(o["reason"] for o in c["outputs"] if not o["passed"])) + "</li>"
        for p in report["parity"] for c in p["cases"] if not c["passed"]]
    images = "".join(f"<figure><img alt='{k}' src='data:image/png;base64,{v}'></figure>"
                     for k, v in plots(report).items())
    env = report["environment"]
    isa = html.escape(isa_suffix(env))
    status = "PASSED" if report["passed"] else "FAILED"
    notes = latency_notes(report) + growth_notes(report) + [n for n in (padding_summary(report),) if n]
    bisected = bisection_lines(report)

    def bullets(items) -> str:
        return "".join(f"<li>{html.escape(x)}</li>" for x in items)

    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>edgeseq report: {html.escape(report['model']['name'])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} tr.fail td{{background:#fdd}}
figure{{display:inline-block;margin:1em}} .PASSED{{color:#070}} .FAILED{{color:#b00}}</style></head><body>
<h1>edgeseq report: {html.escape(report['model']['name'])} <span class="{status}">{status}</span></h1>
<p>{html.escape(env['cpu'])} ({env['cpu_count']} cores{isa}), python {html.escape(env['python'])},
{html.escape(', '.join(f'{k} {v}' for k, v in env['packages'].items()))}; created {html.escape(report['created'])}</p>
<table><tr>{head}</tr>{body}</table>
{'<ul>' + bullets(notes) + '</ul>' if notes else ''}
{stream_table}
{'<h2>Failures</h2><ul>' + ''.join(failures[:50]) + '</ul>' if failures else ''}
{'<h2>Which layer diverged</h2><ul>' + bullets(bisected) + '</ul>' if bisected else ''}
{images}
</body></html>
"""


def html_available() -> bool:
    """report.html needs matplotlib (the `report` extra) for its plots."""
    from .._lazy import installed

    return installed("matplotlib")


def write_html(report: dict, path: str | Path) -> bool:
    """report.html beside the JSON; False (and no file) when matplotlib is not installed."""
    if not html_available():
        return False
    write_text_atomic(path, render_html(report))
    return True
