"""Feeds for models we did not build: inputs made from an artifact's declared shapes plus --shape overrides."""

from __future__ import annotations

import re

import numpy as np

from .errors import InputError
from .tensors import TensorSpec

MAX_FEED_BYTES = 1 << 30  # generated inputs above 1 GiB are a typo (--time 100000000), not a benchmark
_SHAPE = re.compile(r"^([^=\s]+)=(\d+(?:x\d+)*)$")


def parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """'features=1x200x128' -> ('features', (1, 200, 128))."""
    match = _SHAPE.match(text.strip())
    if not match:
        raise InputError(f"bad --shape {text!r}: expected NAME=DxDxD, e.g. features=1x200x128")
    dims = tuple(int(d) for d in match.group(2).split("x"))
    if any(d < 1 for d in dims):
        raise InputError(f"bad --shape {text!r}: every dimension must be >= 1")
    return match.group(1), dims


def parse_shapes(items: list[str] | None) -> dict[str, tuple[int, ...]]:
    return dict(parse_shape(s) for s in (items or []))


def validate_feed_size(shapes: dict[str, tuple[tuple[int, ...], str]]) -> None:
    """Refuse, before allocating, inputs whose total size passes MAX_FEED_BYTES ({name: (shape, dtype)})."""
    total = sum(int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize for shape, dtype in shapes.values())
    if total > MAX_FEED_BYTES:
        what = ", ".join(f"{name} {'x'.join(map(str, shape))} {np.dtype(dtype).name}"
                         for name, (shape, dtype) in shapes.items())
        raise InputError(f"the inputs would take {total / 2**30:.1f} GiB ({what}); edgeseq generates at most "
                         f"{MAX_FEED_BYTES / 2**30:g} GiB of inputs: use a smaller time, batch or --shape")


def random_array(rng: np.random.Generator, shape: tuple[int, ...], dtype) -> np.ndarray:
    """Standard-normal values made in float32 directly (no float64 copy twice the size), then cast if needed."""
    return rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)


def feed_from_shapes(specs: tuple[TensorSpec, ...], shapes: dict[str, tuple[int, ...]], seed: int = 0):
    """Random inputs of the declared shapes; every free dimension must be given with --shape."""
    unknown = sorted(set(shapes) - {s.name for s in specs})
    if unknown:
        raise InputError(f"--shape names {unknown} are not inputs of this model ({[s.name for s in specs]})")
    rng = np.random.default_rng(seed)
    sizes = {}
    for spec in specs:
        shape = shapes.get(spec.name)
        if shape is None:
            if spec.free_axes:
                example = "x".join(str(d) if isinstance(d, int) else "N" for d in spec.shape)
                raise InputError(
                    f"input {spec.name!r} has free dimensions ({spec.describe()}); pass --shape {spec.name}={example}"
                )
            shape = tuple(spec.shape)
        elif len(shape) != len(spec.shape) or any(
            isinstance(want, int) and want != got for want, got in zip(spec.shape, shape)
        ):
            raise InputError(f"--shape {spec.name}={'x'.join(map(str, shape))} does not fit {spec.describe()}")
        if np.dtype(spec.dtype).kind not in "fiub":
            raise InputError(f"input {spec.name!r} has dtype {spec.dtype}, which edgeseq cannot synthesize")
        sizes[spec.name] = (tuple(shape), spec.dtype)
    validate_feed_size(sizes)
    return {name: random_array(rng, shape, dtype) if np.dtype(dtype).kind == "f" else np.zeros(shape, dtype=dtype)
            for name, (shape, dtype) in sizes.items()}
