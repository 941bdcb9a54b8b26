"""The rich tables of `models`, `devices` and `profile` (stages, several devices), each built from the JSON dict the
verb can also print or save. Cells are Text (never markup); titles escape what they quote."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table
from rich.text import Text


def _row(table: Table, cells, style: str | None = None) -> None:
    table.add_row(*(Text(c) for c in cells), style=style)


def models_table(rows: list[dict]) -> Table:
    """One row per ModelSpec.summary(): parameters, FLOPs at the default T, inputs and outputs with their shapes."""
    def shape(t: dict) -> str:
        return f"{t['name']}[{'x'.join(map(str, t['shape']))}]"

    table = Table(title="edgeseq models")
    for col in ("name", "parameters", "GFLOP @ T"):
        table.add_column(col, no_wrap=True)
    for col in ("input", "output"):  # a streaming model has six of each: one per line, wrapped if need be
        table.add_column(col)
    for r in rows:
        _row(table, (r["name"], f"{r['parameters']:,}", f"{r['flops_at_default_time'] / 1e9:.3g} @ {r['default_time']}",
                     "\n".join(map(shape, r["inputs"])), "\n".join(map(shape, r["outputs"]))))
    return table


def devices_table(profiles: list[dict]) -> Table:
    """One row per DeviceProfile.to_dict() (with the "files" its runtime opens): runtime, the files it runs, delegate,
    threads, precisions and how it is reached."""
    table = Table(title="edgeseq devices")
    for col in ("name", "runtime", "files", "delegate", "threads", "precisions", "transport", "description"):
        table.add_column(col)
    for p in profiles:
        t = p["transport"]
        where = {"ssh": f"ssh {t['user']}@{t['host']}:{t['port']}", "adb": f"adb {t['serial'] or '(default)'}"}.get(
            t["kind"], "local") + (" (emulated)" if p["emulated"] else "")
        _row(table, (p["name"], p["runtime"], " ".join(p.get("files") or ["-"]), p["delegate"],
                     str(p["threads"] or "default"), ", ".join(p["precisions"]), where, p["description"]))
    return table


def stages_table(data: dict) -> Table:
    """`profile --stages` from a StageProfile dict: each stage's FLOPs share and time, next to eager when measured."""
    eager = data["eager_total_ms"] is not None
    table = Table(title=escape(f"where the time goes: {data['model']} on {data['runtime']}, batch={data['batch']} "
                               f"T={data['time']}, threads={data['threads'] or 'default'}, median of "
                               f"{data['iterations']} runs"))
    columns = ["stage", "FLOPs %", "onnxruntime ms", "%"] + (["eager ms", "%", "eager / onnxruntime"] if eager else [])
    for col in columns:
        table.add_column(col, justify="left" if col == "stage" else "right", no_wrap=True)
    for row in data["rows"]:
        cells = [row["stage"], f"{row['flops_share_pct']:.1f}", f"{row['onnxruntime_ms']:.3f}",
                 f"{row['onnxruntime_share_pct']:.1f}"]
        if eager:
            cells += [f"{row['eager_ms']:.3f}", f"{row['eager_share_pct']:.1f}",
                      f"{row['speedup']:.2f}" if row["speedup"] else "-"]
        _row(table, cells)
    total = ["total", "100.0", f"{data['onnxruntime_total_ms']:.3f}", "100.0"]
    if eager:
        ratio = data["eager_total_ms"] / data["onnxruntime_total_ms"] if data["onnxruntime_total_ms"] else None
        total += [f"{data['eager_total_ms']:.3f}", "100.0", f"{ratio:.2f}" if ratio is not None else "-"]
    _row(table, total, style="bold")
    return table


_SIDE_BY_SIDE = (
    ("runtime", lambda r: r["runtime"] + (" (emulated)" if r["emulated"] else "")),
    ("batch x T", lambda r: f"{r['batch']} x {r['time']}"),
    ("threads", lambda r: str(r["threads"] or "default")),
    ("p50 ms", lambda r: f"{r['p50_ms']:.3f}"),
    ("p90 ms", lambda r: f"{r['p90_ms']:.3f}"),
    ("p99 ms", lambda r: f"{r['p99_ms']:.3f}"),
    ("mean ms", lambda r: f"{r['mean_ms']:.3f}"),
    ("runs", lambda r: str(r["iterations"])),
    ("frames/s", lambda r: f"{r['frames_per_s']:,.0f}"),
    ("RTF", lambda r: f"{r['rtf']:.4f}" if r["rtf"] is not None else "-"),
    ("peak RSS MB", lambda r: f"{r['peak_rss_mb']:.0f}"),
)


def side_by_side_table(title: str, answers: list[dict]) -> Table:
    """`profile` on several devices: one column per DeviceLatency dict; a device that failed reads 'error'."""
    table = Table(title=escape(title))
    table.add_column("")
    for a in answers:
        table.add_column(Text(a["device"]), justify="right")
    for label, cell in _SIDE_BY_SIDE:
        _row(table, [label, *(cell(a["result"]) if a["result"] else ("error" if label == "runtime" else "")
                              for a in answers)])
    return table
