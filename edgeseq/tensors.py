"""Named tensor declarations shared by ModelSpecs, runners and artifacts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

Dim = int | str | None  # int: fixed; str: a named dynamic axis; None: dynamic without a name


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[Dim, ...]
    dtype: str = "float32"

    @property
    def free_axes(self) -> tuple[int, ...]:
        return tuple(i for i, d in enumerate(self.shape) if not isinstance(d, int))

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: dict) -> "TensorSpec":
        return cls(d["name"], tuple(d["shape"]), d.get("dtype", "float32"))

    def describe(self) -> str:
        dims = "x".join(str(d) if d is not None else "?" for d in self.shape)
        return f"{self.name}[{dims}] {self.dtype}"


def validate_feed(specs: tuple[TensorSpec, ...], feed: dict) -> dict[str, np.ndarray]:
    """One-line InputError for wrong names, ranks, fixed dims, dtypes, empty axes or non-finite values."""
    if not isinstance(feed, dict):
        raise InputError(f"feed must be a dict of name -> array, got {type(feed).__name__}")
    names = [s.name for s in specs]
    missing = [n for n in names if n not in feed]
    unexpected = [n for n in feed if n not in names]
    if missing or unexpected:
        raise InputError(f"feed names {sorted(feed)} do not match the model inputs {names}")
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        value = feed[spec.name]
        if not isinstance(value, np.ndarray):
            raise InputError(f"input {spec.name!r} must be a numpy array, got {type(value).__name__}")
        if value.dtype != np.dtype(spec.dtype):
            raise InputError(f"input {spec.name!r} has dtype {value.dtype}, the model expects {spec.dtype}")
        if value.ndim != len(spec.shape):
            raise InputError(
                f"input {spec.name!r} has shape {list(value.shape)}, the model expects rank {len(spec.shape)} "
                f"({spec.describe()})"
            )
        for axis, (want, got) in enumerate(zip(spec.shape, value.shape)):
            if got == 0:
                raise InputError(f"input {spec.name!r} has an empty axis {axis} (shape {list(value.shape)})")
            if isinstance(want, int) and want != got:
                raise InputError(
                    f"input {spec.name!r} has shape {list(value.shape)}, the model expects {spec.describe()}"
                )
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise InputError(f"input {spec.name!r} contains NaN or Inf")
        out[spec.name] = value
    return out
