"""`edgeseq models`: the registered reference models."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .console import out


def models_cmd(as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False):
    """List the registered reference models with parameters and FLOPs."""
    from ..models import list_models
    from .tables import models_table

    rows = [spec.summary() for spec in list_models()]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    out.print(models_table(rows))
