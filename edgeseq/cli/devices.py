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

    profiles = [dict(p.to_dict(), files=_files(p)) for p in list_profiles(user=True)]
    if as_json:
        print(json.dumps(profiles, indent=2))
        return
    out.print(devices_table(profiles))


def _files(profile) -> list[str]:
    """The artifact files the profile runs: on a device, what its agent opens for the runtime (an onnxruntime board
    takes .onnx and .ort); here, the runtime's own format (none for PyTorch, whose rows are the references)."""
    from ..formats import file_suffix
    from ..remote.runner import device_suffixes

    if not profile.local:
        return device_suffixes(profile.runtime.value)
    return [suffix for suffix in [file_suffix(profile.format)] if suffix]
