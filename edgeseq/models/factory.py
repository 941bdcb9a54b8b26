"""A user's model by reference, in the convention of uvicorn and gunicorn: `path/to/file.py:FACTORY` or
`package.module:FACTORY`, the factory returning a ModelSpec. Used wherever a model name goes (CLI, API, recipes)."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path

from torch import nn

from ..errors import InputError
from .spec import ModelSpec


def is_factory_ref(name: str) -> bool:
    """'path/to/file.py:fn' or 'package.module:fn' (a registered model name never holds a colon)."""
    return isinstance(name, str) and ":" in name and bool(name.rpartition(":")[2])


def normalize_ref(ref: str) -> str:
    """One spelling per factory (a file path made absolute), so one process loads each factory once."""
    target, _, attr = ref.rpartition(":")
    return _source(target, ref) if target else ref


def load_factory(ref: str) -> ModelSpec:
    """Import the module a reference names and call its factory: a ModelSpec it returns is the model (named after
    the factory's own name unless it chose one); a bare nn.Module is refused with what to return instead."""
    target, _, attr = ref.rpartition(":")
    if not target or not attr.isidentifier():
        raise InputError(f"model {ref!r}: expected FILE.py:FACTORY or package.module:FACTORY")
    module = _import_target(target, ref)
    factory = getattr(module, attr, None)
    if factory is None:
        raise InputError(f"model {ref!r}: {target} has no {attr!r}")
    if not callable(factory):
        raise InputError(f"model {ref!r}: {attr!r} is not a function ({type(factory).__name__})")
    try:
        made = factory()
    except Exception as exc:
        raise InputError(f"model {ref!r}: the factory failed: {type(exc).__name__}: "
                         f"{(str(exc).splitlines() or [''])[0][:300]}") from None
    if isinstance(made, nn.Module):
        raise InputError(f"model {ref!r} returned a bare nn.Module: return edgeseq.ModelSpec.from_module(module, "
                         "example_inputs, input_names, output_names, dynamic_axes) so edgeseq knows its inputs")
    if not isinstance(made, ModelSpec):
        raise InputError(f"model {ref!r} returned a {type(made).__name__}; a factory returns a ModelSpec")
    return dataclasses.replace(made, source=_source(target, ref))


def _import_target(target: str, ref: str):
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise InputError(f"model {ref!r}: no file {target!r}")
        name = f"edgeseq_user_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise InputError(f"model {ref!r}: importing {path.name} failed: {type(exc).__name__}: "
                             f"{(str(exc).splitlines() or [''])[0][:300]}") from None
        return module
    try:
        return importlib.import_module(target)
    except ImportError as exc:
        raise InputError(f"model {ref!r}: cannot import {target!r} ({exc})") from None


def _source(target: str, ref: str) -> str:
    """What the artifact records to find the factory again: an absolute file path, or the module path as given."""
    if target.endswith(".py") or "/" in target:
        return f"{Path(target).expanduser().resolve()}:{ref.rpartition(':')[2]}"
    return ref
