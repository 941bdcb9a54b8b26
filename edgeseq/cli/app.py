"""The `edgeseq` command: the typer app, one-line errors with documented exit codes, --version, and main().

Exit codes: 0 all checks passed, 1 a parity check (or a runtime) failed, 2 bad usage or input, 3 internal error.
`export --format tensorrt` where no engine can be built exits 0 after writing the ONNX and the build plan: the
report lists the artifact as "not run" and says that no engine was built here. `preflight` exits 1 when the ONNX
has nodes TensorRT's parser would reject.
"""

from __future__ import annotations

import functools
import os
from typing import Annotated

import typer

from ..errors import EdgeseqError
from .check import check_cmd
from .console import say, say_error, say_marked
from .devices import devices_cmd
from .diff import diff_cmd
from .export import export_cmd
from .models import models_cmd
from .preflight import preflight_cmd
from .profile import profile_cmd

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Export sequence models to edge formats; check parity and latency against PyTorch.")


def _handled(fn):
    """One line and a documented exit code for every failure; a traceback only with EDGESEQ_DEBUG=1."""

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        try:
            return fn(*a, **kw)
        except typer.Exit:
            raise
        except EdgeseqError as exc:  # plain text: "features[batch x time x 128]" and "edgeseq[onnx]" print as written
            say_error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            say("interrupted", stderr=True)
            raise typer.Exit(130) from None
        except Exception as exc:  # a bug in edgeseq or a library: still one line unless asked for more
            if os.environ.get("EDGESEQ_DEBUG"):
                raise
            say_marked("internal error:", "bold red", f" {type(exc).__name__}: {exc} "
                       "(set EDGESEQ_DEBUG=1 for a traceback)", stderr=True)
            raise typer.Exit(3) from None

    return wrapper


def _version(value: bool):
    if value:
        from .._version import __version__

        say(f"edgeseq {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print edgeseq's version and exit.")] = False):
    """edgeseq command line."""


for _name, _verb in (("models", models_cmd), ("devices", devices_cmd), ("export", export_cmd), ("check", check_cmd),
                     ("profile", profile_cmd), ("diff", diff_cmd), ("preflight", preflight_cmd)):
    app.command(_name)(_handled(_verb))


def main() -> None:
    """The console script. Usage errors (an unknown option, a value out of range) are one line naming the help
    command, like every other bad input, instead of click's usage panel; `edgeseq` alone still prints the help."""
    import sys

    try:
        code = app(prog_name="edgeseq", standalone_mode=False)
    except typer.Abort:
        say("interrupted", stderr=True)
        code = 130
    except Exception as exc:  # click's (vendored by typer) ClickException family: format_message / exit_code / show
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()
        else:
            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if ctx is not None else "edgeseq"
            message = " ".join(exc.format_message().split())
            say_error(f"{message} (see: {where} --help)")
        code = exc.exit_code
    sys.exit(code if isinstance(code, int) else 0)
