"""edgeseq: export sequence models to edge formats and prove they still match the PyTorch original.

The public API is imported lazily so that `import edgeseq` pulls in no heavy or optional library.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from ._version import __version__

_API = {
    "export": "edgeseq.api",
    "load": "edgeseq.api",
    "check": "edgeseq.api",
    "check_stream": "edgeseq.api",
    "check_padding": "edgeseq.api",
    "profile": "edgeseq.api",
    "bisect": "edgeseq.bisection",
    "diff_reports": "edgeseq.report",
    "run_matrix": "edgeseq.matrix",
    "load_recipe": "edgeseq.recipe",
    "run_recipe": "edgeseq.recipe",
    "MatrixOptions": "edgeseq.plan",
    "plan_matrix": "edgeseq.plan",
    "run_plan": "edgeseq.matrix",
    "get_model": "edgeseq.models",
    "list_models": "edgeseq.models",
    "ModelSpec": "edgeseq.models",
    "Artifact": "edgeseq.artifact",
    "Format": "edgeseq.enums",
    "Precision": "edgeseq.enums",
    "Tolerance": "edgeseq.parity",
    "Tolerances": "edgeseq.parity",
    "ParityResult": "edgeseq.parity",
    "LatencyResult": "edgeseq.latency",
    "Report": "edgeseq.report",
    "load_report": "edgeseq.report",
    "Runner": "edgeseq.runner",
    "EdgeseqError": "edgeseq.errors",
}

__all__ = ["__version__", *_API]

if TYPE_CHECKING:  # pragma: no cover
    from .api import check, check_padding, check_stream, export, load, profile  # noqa: F401
    from .models import ModelSpec, get_model, list_models  # noqa: F401


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeseq' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
