"""Why torch.export fixed a dynamic axis, said in one line a model's developer can act on: the axis, the guard
torch added on it, and the user's own source line that added it (torch's own message names none of these).

Used by the exporters that go through torch.export (TFLite) when a conversion fails with a specialized axis: the
module is traced once more with torch.export.draft_export, whose report keeps every guard with its user stack.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

_TORCH_DIR = Path(__import__("torch").__file__).resolve().parent
_EDGESEQ_DIR = Path(__file__).resolve().parent.parent
_SOURCE = re.compile(r"L\['([^']+)'\](?:\[(\d+)\])?\.size\(\)\[(\d+)\]")


def explain_specialization(module, args, dynamic_shapes, spec) -> str | None:
    """'the time axis was fixed by the guard `time > 10` at /path/model.py:11 (`if T > 10:`)', or None when no
    guard on a declared axis with a user source line is found (the caller keeps its own message)."""
    import torch

    try:
        with _quiet():
            program = torch.export.draft_export(module, args, dynamic_shapes=dynamic_shapes, strict=False)
    except Exception:  # noqa: BLE001 - a diagnosis that fails leaves the original error as it was
        return None
    report = getattr(program, "_report", None)
    files = getattr(report, "str_to_filename", {}) or {}
    for failure in getattr(report, "failures", ()):
        data = failure.data if isinstance(getattr(failure, "data", None), dict) else {}
        if "expr" not in data:
            continue
        axes = _axes(data.get("symbol_to_sources") or {}, spec)
        frame = _user_frame(data.get("user_stack") or [], files)
        if not axes or frame is None:
            continue
        expr = str(data["expr"])
        for symbol, axis in axes.items():
            expr = re.sub(rf"\b{re.escape(symbol)}\b", axis, expr)
        path, line, code = frame
        return (f"the {' and '.join(sorted(set(axes.values())))} axis was fixed by the guard `{expr}` at "
                f"{path}:{line} (`{code}`)")
    return None


def _axes(symbols: dict, spec) -> dict[str, str]:
    """{torch symbol: declared axis name} for the symbols whose source is an input's size."""
    names = spec.input_names
    out = {}
    for symbol, source in symbols.items():
        m = _SOURCE.search(str(source))
        if not m:
            continue
        name, index, axis = m.group(1), m.group(2), int(m.group(3))
        if name == "args" and index is not None and int(index) < len(names):
            name = names[int(index)]
        tensor = next((t for t in spec.inputs if t.name == name), None)
        if tensor is not None and axis < len(tensor.shape) and isinstance(tensor.shape[axis], str):
            out[symbol] = tensor.shape[axis]
    return out


def _user_frame(stack: list, files: dict) -> tuple[str, int, str] | None:
    """The innermost frame outside torch and edgeseq: the user's own line."""
    for frame in reversed(stack):
        path = files.get(frame.get("filename"), frame.get("filename"))
        if not isinstance(path, str):
            continue
        resolved = Path(path).resolve()
        if _TORCH_DIR in resolved.parents or _EDGESEQ_DIR in resolved.parents:
            continue
        return path, int(frame.get("line", 0)), str(frame.get("loc", "")).strip()
    return None


def _quiet():
    """draft_export logs a banner of warnings; the diagnosis is the one line it returns. It reads the guards from
    the torch.__trace logger, which litert-torch turns down after a conversion: DEBUG for the duration."""
    from .._quiet import python_chatter_quiet

    quiet = {name: logging.CRITICAL for name in ("torch.export", "torch._export", "torch.fx.experimental")}
    return python_chatter_quiet({**quiet, "torch.__trace": logging.DEBUG})
