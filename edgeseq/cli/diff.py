"""`edgeseq diff`: two saved reports compared row by row; exit 1 on a regression."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..artifact import validate_output_file, write_text_atomic
from ..errors import InputError
from . import args
from .console import out, say


def diff_cmd(
    old: Annotated[Path, typer.Argument(help="The earlier report.json (or the folder holding it).")],
    new: Annotated[Path, typer.Argument(help="The later report.json (or the folder holding it).")],
    max_slowdown: Annotated[Optional[float], typer.Option(
        "--max-slowdown", help="Fail when a row got more than this many times slower, e.g. 1.2: its p50 relative "
                                "to PyTorch eager in the same report (same machine only).")] = None,
    max_error_growth: Annotated[Optional[float], typer.Option(
        "--max-error-growth", help="Fail when a passing row's worst rel L2 grew by more than this ratio.")] = None,
    json_out: args.JsonOut = None,
    md_out: Annotated[Optional[Path], typer.Option(
        "--md", help="Also write the comparison as Markdown (a pull-request comment, a CI summary).")] = None,
):
    """Compare two export reports row by row: parity, worst error, p50 and size; exit 1 on a regression."""
    from ..report import diff_reports, diff_table, load_report, render_diff_markdown

    def resolve(path: Path) -> Path:
        return path / "report.json" if path.is_dir() else path

    old_path, new_path = resolve(old), resolve(new)
    for path in (old_path, new_path):
        if not path.exists():
            raise InputError(f"{str(path)!r} does not exist")
    for path, flag in ((json_out, "--json"), (md_out, "--md")):
        if path:
            validate_output_file(path, flag)
    result = diff_reports(load_report(old_path), load_report(new_path), max_slowdown=max_slowdown,
                          max_error_growth=max_error_growth, old_label=str(old_path), new_label=str(new_path))
    data = result.to_dict()
    out.print(diff_table(data))
    for note in result.notes:
        say(f"note: {note}")
    if json_out:
        write_text_atomic(json_out, json.dumps(data, indent=2) + "\n")
    if md_out:
        write_text_atomic(md_out, render_diff_markdown(data))
    regressed = [r for r in result.rows if r.status == "regressed"]
    say(f"{len(regressed)} of {len(result.rows)} rows regressed" if regressed else
        f"no regressions in {len(result.rows)} rows")
    raise typer.Exit(1 if regressed else 0)
