"""Where the CLI prints, and how: every message is plain text (never rich markup), so a pip hint such as
`pip install 'edgeseq[report]'`, a tensor name like `features[batch x time x 128]` or a path prints as written."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console
from rich.text import Text

PIPE_WIDTH = 200  # piped / logged output (CI, `| tee`): tables at full width, not cropped to rich's 80 columns


def _console(stderr: bool = False) -> Console:
    """A terminal keeps its own width; elsewhere, unless COLUMNS says otherwise, PIPE_WIDTH, so a CI log shows
    'onnxruntime-cpu' and not 'onnxruntime-…'."""
    piped = not Console(stderr=stderr).is_terminal and not os.environ.get("COLUMNS")
    return Console(stderr=stderr, soft_wrap=True, width=PIPE_WIDTH if piped else None)


out = _console()
err = _console(stderr=True)


def say(text: str, *, stderr: bool = False, style: str | None = None) -> None:
    """One message, printed exactly as given (no markup, no highlighting), on stdout or stderr."""
    (err if stderr else out).print(text, style=style, markup=False, highlight=False)


def say_marked(word: str, style: str, rest: str, *, stderr: bool = False) -> None:
    """A styled word ('error:', 'PASS') and then plain text: the text is never read as markup."""
    (err if stderr else out).print(Text.assemble((word, style), rest))


def say_error(message: str) -> None:
    """'error: MESSAGE' on stderr, the one line every failure of the CLI prints."""
    say_marked("error:", "bold red", f" {message}", stderr=True)


def print_artifact_notes(report: dict) -> None:
    """The first note of each artifact, e.g. that no TensorRT engine was built here and the trtexec command."""
    for art in report["artifacts"]:
        for note in art.get("notes", [])[:1]:
            say(f"note: {Path(art['path']).name}: {note}")


def print_failures(report: dict, notes: bool = True) -> None:
    """Each failing case, the notes that explain a row (bisection, int8 kernels on this CPU), then (export / recipe)
    the first divergent layer of each failing row. notes=False: the caller printed every note already."""
    from ..report import bisection_lines, failure_lines

    for par in report["parity"]:
        for line in failure_lines(par):
            say(f"FAIL {par['runtime']} {line}", stderr=True)
        for note in par.get("notes", []) if notes else ():
            if note.startswith(("layer bisection", "int8 kernels")):
                say(f"note: {par['runtime']}: {note}", stderr=True)
    for line in bisection_lines(report):
        say(line.replace("`", ""), stderr=True)
