"""Argument groups shared by the commands, so the same flag means the same thing everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from ..errors import InputError

Threads = Annotated[Optional[int], typer.Option("--threads", "-t", min=1, help="Intra-op threads (default: runtime's).")]
Device = Annotated[
    Optional[str],
    typer.Option("--device", help="cpu | cuda | tensorrt, a profile name (edgeseq devices) or a profile .toml."),
]
OneDevice = Annotated[  # a list, so that a repeated --device is refused instead of the last one winning
    Optional[List[str]],
    typer.Option("--device", help="cpu | cuda | tensorrt, a profile name (edgeseq devices) or a profile .toml."),
]
Devices = Annotated[
    Optional[List[str]],
    typer.Option("--device", help="cpu | cuda | tensorrt, a profile name (edgeseq devices) or a profile .toml; "
                 "repeat it to profile on several devices at once, side by side."),
]
Weights = Annotated[
    Optional[Path], typer.Option("--weights", help="Checkpoint: .safetensors or a torch state dict (weights_only).")
]
Model = Annotated[Optional[str], typer.Option("--model", "-m", help="Registered model name (see `edgeseq models`), or your own: FILE.py:FACTORY / package.module:FACTORY.")]
Times = Annotated[
    Optional[str], typer.Option("--times", help="Sequence lengths to check, e.g. 1,7,50,200,1000 (default: model's).")
]
Batches = Annotated[Optional[str], typer.Option("--batches", help="Batch sizes to check, e.g. 1,3 (default: model's).")]
Warmup = Annotated[int, typer.Option("--warmup", min=0, help="Untimed runs before timing.")]
Iterations = Annotated[int, typer.Option("--iterations", "-n", min=1, help="Timed runs.")]
ToleranceOverrides = Annotated[
    Optional[List[str]],
    typer.Option("--tolerance", help="PRECISION=REL_L2 replaces that precision's parity tolerance, e.g. "
                                     "int8-static=2e-2 (repeatable; the defaults are measured, see docs/tolerances.md)."),
]
JsonOut = Annotated[Optional[Path], typer.Option("--json", help="Also write the result as JSON to this file.")]


def int_list(text: str | None, what: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise InputError(f"--{what} must be comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise InputError(f"--{what} must list integers >= 1, got {text!r}")
    return values


def tolerance_overrides(values: list[str] | None) -> tuple[tuple[str, float], ...]:
    """['int8-static=2e-2'] -> (('int8-static', 0.02),); a bad pair is a one-line InputError."""
    from ..enums import Precision
    from ..errors import UnknownNameError
    from ..parity import validate_rel_l2

    out = []
    for text in values or ():
        name, _, value = text.partition("=")
        try:  # no "=" leaves value empty, which float() refuses too
            precision = Precision.parse(name.strip()).value
            rel_l2 = float(value)
        except (UnknownNameError, ValueError):
            raise InputError(f"--tolerance takes PRECISION=REL_L2, e.g. int8-static=2e-2; got {text!r}") from None
        out.append((precision, validate_rel_l2(rel_l2, f"--tolerance {text!r}")))
    return tuple(out)
