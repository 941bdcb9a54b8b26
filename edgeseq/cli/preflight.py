"""`edgeseq preflight`: the nodes TensorRT's ONNX parser would reject, without TensorRT."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..artifact import validate_output_file, write_text_atomic
from . import args
from .console import say


def preflight_cmd(
    onnx_file: Annotated[Path, typer.Argument(help="ONNX model to check against TensorRT's ONNX parser support.")],
    json_out: args.JsonOut = None,
):
    """Name the nodes of an ONNX model that TensorRT's ONNX parser would reject (no TensorRT needed); exit 1 if any."""
    from ..formats.tensorrt import preflight

    if json_out:
        validate_output_file(json_out, "--json")
    result = preflight(onnx_file)
    data = result.to_dict()
    if json_out:
        write_text_atomic(json_out, json.dumps(data, indent=2) + "\n")
    say(f"{'OK' if result.ok else 'UNSUPPORTED'} {onnx_file.name}: {result.summary()}")
    for issue in result.issues:
        say(f"- {issue}")
    for warning in result.warnings:
        say(f"warning: {warning}")
    raise typer.Exit(0 if result.ok else 1)
