"""The rows and notes every renderer shows, derived from a report dict: one place decides what a row says, so the
terminal, Markdown and HTML tables agree and `edgeseq diff` compares the same values."""

from __future__ import annotations

from pathlib import Path

COLUMNS = ("format", "precision", "runtime", "parity", "rel L2 (worst)", "max abs", "cosine", "SNR dB",
           "p50 ms", "p90 ms", "x torch eager", "size")
QUANT_COLUMNS = ("artifact", "runtime", "size x fp32", "p50 x fp32", "max abs", "rel L2", "cosine", "SNR dB",
                 "torch int8 rel L2", "error over t", "still float")
UNSTABLE_P90_OVER_P50 = 2.0


def fmt_value(value, spec: str) -> str:
    """A number as a table cell: '-' for a missing one, 'nan' kept visible."""
    if value is None:
        return "-"
    if isinstance(value, float) and value != value:
        return "nan"
    return format(value, spec)


def fmt_size(n: int | None) -> str:
    if not n:
        return "-"
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def isa_suffix(env: dict) -> str:
    """', int8 kernels x86-avx2' for the environment line (reports written before it was recorded: nothing)."""
    return f", int8 kernels {env['int8_isa']}" if env.get("int8_isa") else ""


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
    """matrix_entries as text cells keyed by COLUMNS."""
    rows = []
    for e in matrix_entries(report):
        worst = e["worst"]
        emulated = " (emulated)" if e["emulated"] else ""
        rows.append({
            "format": e["format"], "precision": e["precision"], "runtime": e["runtime"], "parity": e["parity"],
            "rel L2 (worst)": fmt_value(worst.get("rel_l2"), ".2e"),
            "max abs": fmt_value(worst.get("max_abs"), ".2e"),
            "cosine": fmt_value(worst.get("cosine"), ".7f"),
            "SNR dB": fmt_value(worst.get("snr_db"), ".1f"),
            "p50 ms": fmt_value(e["p50_ms"], ".2f") + emulated,
            "p90 ms": fmt_value(e["p90_ms"], ".2f") + emulated,
            "x torch eager": fmt_value(e["x_eager"], ".2f"),
            "size": fmt_size(e["size_bytes"]),
        })
    return rows


def _ops(ops: dict) -> str:
    return ", ".join(f"{k} x{v}" if v > 1 else k for k, v in sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))) or "-"


def _over_t(report: dict, artifact: str, runtime: str) -> str:
    """'start -> end (xgrowth)' of the quantized row's most-growing output: the float ops beside what they cost."""
    found = [t for p in report.get("parity", ()) if p["artifact"] == artifact and p["runtime"] == runtime
             for t in p.get("timestep_error", ())]
    if not found:
        return "-"
    t = max(found, key=lambda t: t["growth"])
    return f"{t['start']:.1e} -> {t['end']:.1e} (x{t['growth']:.2f})"


def quant_rows(report: dict) -> list[dict[str, str]]:
    """One row per quantized artifact against its fp32 parent, keyed by QUANT_COLUMNS."""
    rows = []
    for q in report.get("quantization", []):
        rows.append({
            "artifact": Path(q["artifact"]).name,
            "runtime": q["runtime"],
            "size x fp32": fmt_value(q.get("size_ratio"), ".2f"),
            "p50 x fp32": fmt_value(q.get("latency_ratio"), ".2f"),
            "max abs": fmt_value(q["max_abs"], ".2e"),
            "rel L2": fmt_value(q["rel_l2"], ".2e"),
            "cosine": fmt_value(q["cosine"], ".6f"),
            "SNR dB": fmt_value(q["snr_db"], ".1f"),
            "torch int8 rel L2": fmt_value(q.get("torch_int8_rel_l2"), ".2e"),
            "error over t": _over_t(report, q["artifact"], q["runtime"]),
            "still float": _ops(q.get("float_ops", {})),
        })
    return rows


def latency_notes(report: dict) -> list[str]:
    """How a latency row was timed where it is not edgeseq's own end-to-end loop (CUDA events, a device's tool), and
    which rows an emulator timed."""
    from ..latency import EMULATED_NOTE

    return [f"latency of {x['runtime']}" + (f" on `{Path(x['artifact']).name}`" if x["artifact"] else "")
            + f": {'; '.join(n for n in (EMULATED_NOTE if x.get('emulated') else '', x.get('note')) if n)}"
            for x in report["latency"] if x.get("note") or x.get("emulated")]


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
    from ..bisection import verdict

    out = []
    for b in report.get("bisections", []):
        where = f"`{Path(b['artifact']).name}` on {b['runtime']}" if b["artifact"] else b["runtime"]
        out.append(f"{where} (bisected at batch={b['batch']} T={b['time']} {b.get('source', 'speech')}): "
                   f"{verdict(b)}")
    return out


def failure_lines(par: dict) -> list[str]:
    """'batch=1 T=7 speech: why' for each failing case of a parity row (its error, or each output's reason)."""
    out = []
    for c in par["cases"]:
        if not c["passed"]:
            why = c["error"] or "; ".join(f"{o['output']}: {o['reason']}" for o in c["outputs"] if not o["passed"])
            out.append(f"batch={c['batch']} T={c['time']} {c['source']}: {why}")
    return out


def growth_notes(report: dict) -> list[str]:
    """One line per parity output whose error grows over T beyond its limit, even where the row passes."""
    from ..timesteps import TimestepError

    out = []
    for par in report.get("parity", ()):
        where = f"{par['runtime']} {par['precision']}"
        out += [f"{where}: {TimestepError.from_dict(t).summary()}" for t in par.get("timestep_error", ())
                if TimestepError.from_dict(t).flagged]
    return out


def timestep_line(par: dict) -> str:
    """'error over t (T=1000): encoded (forward half) x1.02, ...' for one parity row; '' when it has none."""
    from ..timesteps import TimestepError

    found = [TimestepError.from_dict(t) for t in par.get("timestep_error", ())]
    if not found:
        return ""
    return f"error over t (T={max(t.time for t in found)}, growth end / start): " + ", ".join(
        f"{t.label} x{t.growth:.2f}{' FLAGGED' if t.flagged else ''}" for t in found)


STREAM_COLUMNS = ("runtime", "artifact", "chunk", "streamed vs full", "rel L2", "first call ms", "later call ms",
                  "x share of full")


def stream_rows(report: dict) -> list[dict[str, str]]:
    """One row per (streaming artifact on a runtime, chunk size): the gate's verdict and what a chunk costs."""
    rows = []
    for s in report.get("streams", ()):
        for c in s["cases"]:
            worst = max((o["rel_l2"] for o in c["outputs"]), default=float("nan"))
            rows.append({"runtime": s["runtime"], "artifact": Path(s["artifact"]).name or "-",
                         "chunk": str(c["chunk"]), "streamed vs full": "PASS" if c["passed"] else "FAIL",
                         "rel L2": fmt_value(worst, ".2e"), "first call ms": fmt_value(c["first_chunk_ms"], ".3f"),
                         "later call ms": fmt_value(c["chunk_ms"], ".3f"),
                         "x share of full": fmt_value(c["share_ratio"], ".2f")})
    return rows


def stream_failure_lines(stream: dict) -> list[str]:
    return [f"chunk {c['chunk']}: {o['output']}: {o['reason']}" for c in stream["cases"] for o in c["outputs"]
            if not o["passed"]]


def padding_line(report: dict, par: dict) -> str:
    """'padding: <verdict>' for the parity row's artifact on its runtime; '' where padding was not checked."""
    found = [x for x in report.get("padding", ()) if x["artifact"] == par["artifact"] and x["runtime"] == par["runtime"]]
    return f"padding: {found[0]['verdict']}" if found else ""


def padding_summary(report: dict) -> str:
    """One line for the terminal: on which rows padding is safe, else the worst row's verdict."""
    rows = report.get("padding", ())
    if not rows:
        return ""
    safe = [f"{x['runtime']} {x['precision']}" for x in rows if x["padding_safe"]]
    unsafe = [x for x in rows if not x["padding_safe"]]
    if not unsafe:
        return f"padding: every row is padding-safe ({len(safe)} checked)"
    def err(x):
        return max((r["rel_l2"] for c in x["cases"] for r in c["rows"]), default=0.0)

    worst = max(unsafe, key=err)
    why = f"lengths from {worst['lengths_input']!r}" if worst["lengths_input"] else "the model takes no lengths input"
    return (f"padding: {len(unsafe)} of {len(rows)} rows not padding-safe (worst row rel L2 {err(worst):.2g} on "
            f"{worst['runtime']} {worst['precision']}; {why}); see report.md")
