"""Lazy imports of optional SDKs, so `import edgeseq` stays light and a missing extra names its fix."""

from __future__ import annotations

import importlib
from types import ModuleType

from ._quiet import quiet_import
from .errors import MissingExtraError


def require(module: str, extra: str, *, quiet: bool = False) -> ModuleType:
    """The module, or MissingExtraError naming the pip command. quiet: the import's native stderr chatter (absl
    banners and the like) is dropped unless the import fails (see _quiet)."""
    try:
        return quiet_import(module) if quiet else importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{module} is not installed ({exc}); install it with: pip install 'edgeseq[{extra}]'"
        ) from None


def installed(module: str) -> bool:
    """Whether the module can be found, without importing it (some SDKs take seconds to import)."""
    from importlib.util import find_spec

    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def available(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
