"""Rich tables of a report dict (and of a report diff) for the terminal. Every cell and note is plain text, never
rich markup: a runtime, a path or a pip hint ('edgeseq[report]') prints as written."""

from __future__ import annotations

from .rows import (STREAM_COLUMNS, growth_notes, matrix_rows, padding_summary, quant_rows, stream_rows,
                   unstable_notes)

TERMINAL_COLUMNS = ("format", "precision", "runtime", "parity", "rel L2 (worst)", "max abs", "p50 ms",
                    "x torch eager", "size")
LOW_PRIORITY = ("cosine", "SNR dB", "size", "max abs", "torch int8 rel L2", "size x fp32")  # left out first


def print_table(report: dict, console=None) -> None:
    """The matrix, its unstable-timing notes, then the quantized-vs-fp32 table when there is one."""
    from rich.console import Console
    from rich.markup import escape

    console = console or Console()
    matrix = matrix_rows(report)
    console.print(fitted_table(f"edgeseq: {escape(report['model']['name'])}", TERMINAL_COLUMNS, matrix,
                               console.width, text=("format", "precision", "runtime"),
                               styles=["red" if row["parity"] == "FAIL" else None for row in matrix]))
    for note in unstable_notes(report) + growth_notes(report) + [n for n in (padding_summary(report),) if n]:
        console.print(note, style="yellow", highlight=False, markup=False)
    streamed = stream_rows(report)
    if streamed:
        console.print(fitted_table("streamed in chunks vs one full call", STREAM_COLUMNS, streamed, console.width,
                                   text=("runtime", "artifact"),
                                   styles=["red" if r["streamed vs full"] == "FAIL" else None for r in streamed]))
    rows = quant_rows(report)
    if rows:
        columns = ("artifact", "runtime", "size x fp32", "p50 x fp32", "rel L2", "torch int8 rel L2", "error over t",
                   "still float")
        console.print(fitted_table("quantized vs fp32 (same runtime)", columns, rows, console.width,
                                   text=("artifact", "runtime", "still float"), wrap=("still float",)))


def fitted_table(title: str, columns, rows: list[dict], width: int, *, text=(), wrap=(), styles=None,
                 drop=LOW_PRIORITY):
    """A rich Table that never cuts or splits a number (rich's own shrinking cut them to '1…', folding split them
    into '10.9' over '6'). `title` is rich markup (escape what it quotes); cells are plain text.

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
            table.add_column(Text(c), no_wrap=c not in wrap, justify="left" if c in text else "right")
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
            table.add_column(Text(c), width=widths[c], overflow="fold", justify="left" if c in text else "right")
    for i, row in enumerate(rows):
        cells = [Text(row[c]) if c in text or c in wrap else Text(row[c], no_wrap=True, overflow="ellipsis")
                 for c in shown]
        table.add_row(*cells, style=styles[i] if styles else None)
    return table


def diff_table(diff: dict):
    """`edgeseq diff`'s table from a ReportDiff dict: regressed rows red, improved ones green."""
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    from .diff import render_diff

    header, *rows = render_diff(diff)
    table = Table(title=f"edgeseq diff: {escape(diff['model'])}", show_lines=False)
    for col in header:
        table.add_column(Text(col), no_wrap=col != "why")
    styles = {"regressed": "red", "improved": "green"}
    for row in rows:
        table.add_row(*map(Text, row), style=styles.get(row[0]))
    return table
