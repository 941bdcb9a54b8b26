"""`edgeseq devices`: the device profiles, shipped and this machine's own."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .console import out


def devices_cmd(as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False):
    """List the device profiles: shipped (devices/*.toml), then this machine's own (e.g. tools/arm64-target's)."""
    from ..devices import list_profiles
    from .tables import devices_table

    profiles = [p.to_dict() for p in list_profiles(user=True)]
    if as_json:
        print(json.dumps(profiles, indent=2))
        return
    out.print(devices_table(profiles))
