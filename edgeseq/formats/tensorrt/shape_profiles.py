"""The engine's optimization profile (a *shape* profile: min / opt / max per input), from the ModelSpec or from
NAME=MIN:OPT:MAX overrides."""

from __future__ import annotations

import re
from typing import Iterable

from ...errors import InputError
from .options import DEFAULT_MAX_BATCH, DEFAULT_MAX_TIME, ShapeRange

# ---- the optimization profile ----------------------------------------------------------------------------------------

_SHAPES = re.compile(r"^([^=\s]+)=(\d+(?:x\d+)*):(\d+(?:x\d+)*):(\d+(?:x\d+)*)$")


def default_shape_profile(spec) -> dict[str, ShapeRange]:
    """min/opt/max per input from the ModelSpec: batch 1 / 1 / max(16, its sweep), time 1 / its default T /
    max(1000, its sweep); fixed axes stay fixed."""
    from ...models.spec import BATCH, TIME

    batch = (1, 1, max(DEFAULT_MAX_BATCH, *spec.batch_sweep))
    times = (1, spec.default_time, max(DEFAULT_MAX_TIME, spec.default_time, *spec.time_sweep))
    sizes = getattr(spec, "_axis_sizes", {})
    profile = {}
    for t in spec.inputs:
        lo, opt, hi = [], [], []
        for d in t.shape:
            if isinstance(d, int):
                rng = (d, d, d)
            elif d == BATCH:
                rng = batch
            elif d == TIME:
                rng = times
            elif d in sizes:  # another named axis of a user module: fixed at its example size
                rng = (sizes[d],) * 3
            else:
                raise InputError(f"{spec.name}: input {t.name!r} has a free axis {d!r} with no size; pass --shapes")
            lo.append(rng[0]), opt.append(rng[1]), hi.append(rng[2])
        profile[t.name] = ShapeRange(tuple(lo), tuple(opt), tuple(hi))
    return profile


def parse_shape_profile(items: Iterable[str] | dict | None) -> dict[str, ShapeRange]:
    """'features=1x1x128:1x200x128:16x1000x128' (NAME=MIN:OPT:MAX) -> {'features': ShapeRange(...)}."""
    if not items:
        return {}
    if isinstance(items, dict):
        return {k: v if isinstance(v, ShapeRange) else _shape_range(k, v) for k, v in items.items()}
    if isinstance(items, str):
        items = [items]  # one NAME=MIN:OPT:MAX, not its characters
    out = {}
    for text in items:
        match = _SHAPES.match(str(text).strip())
        if not match:
            raise InputError(f"bad --shapes {text!r}: expected NAME=MIN:OPT:MAX with DxDxD shapes, "
                             "e.g. features=1x1x128:1x200x128:16x1000x128")
        dims = [tuple(int(d) for d in g.split("x")) for g in match.groups()[1:]]
        out[match.group(1)] = ShapeRange(*dims)
    return out


def _shape_range(name, value) -> ShapeRange:
    """{name: (min, opt, max)} from the API: three shapes of integers, or one line saying what was expected."""
    from ..._checks import is_integer

    try:
        shapes = [tuple(shape) for shape in value]
    except TypeError:  # an int where a shape was expected
        shapes = []
    ok = isinstance(name, str) and len(shapes) == 3 and all(
        is_integer(d) for shape in shapes for d in shape)
    if not ok:
        raise InputError(f"shapes[{name!r}] must be three shapes (min, opt, max), e.g. "
                         f"((1, 1, 128), (1, 200, 128), (16, 1000, 128)); got {value!r}")
    return ShapeRange(*(tuple(int(d) for d in shape) for shape in shapes))


def resolve_shape_profile(spec, shapes: dict[str, ShapeRange] | None) -> dict[str, ShapeRange]:
    """The ModelSpec's profile with --shapes overrides, checked: names, ranks, fixed dims and min <= opt <= max."""
    profile = default_shape_profile(spec)
    for name, rng in (shapes or {}).items():
        if name not in profile:
            raise InputError(f"--shapes names {name!r}, which is not an input of {spec.name} ({list(profile)})")
        declared = next(t for t in spec.inputs if t.name == name)
        if not len(rng.min) == len(rng.opt) == len(rng.max) == len(declared.shape):
            raise InputError(f"--shapes {name}: min, opt and max must all have rank {len(declared.shape)} "
                             f"({declared.describe()})")
        for axis, want in enumerate(declared.shape):
            if isinstance(want, int) and {rng.min[axis], rng.opt[axis], rng.max[axis]} != {want}:
                raise InputError(f"--shapes {name}: axis {axis} is fixed at {want} in {declared.describe()}")
        if not all(1 <= a <= b <= c for a, b, c in zip(rng.min, rng.opt, rng.max)):
            raise InputError(f"--shapes {name}: every axis needs 1 <= min <= opt <= max (got {rng.describe()}, "
                             f"opt {'x'.join(map(str, rng.opt))})")
        profile[name] = rng
    return profile


def _shape_profile_text(profile: dict[str, ShapeRange]) -> str:
    return ", ".join(f"{n}={r.describe()}" for n, r in profile.items())
