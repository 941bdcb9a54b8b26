"""The value checks every entry point shares (API, MatrixOptions, recipes, latency, model inputs), so a value means
the same everywhere: numpy integers count as integers, bool never does, NaN and inf are not positive numbers, and an
iterable (a generator too) is read exactly once. Each raises a one-line InputError naming `what`."""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Iterable

from .errors import InputError


def is_integer(value) -> bool:
    """int or a numpy integer; a bool is a flag, not a count."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_number(value) -> bool:
    """int, float or their numpy kinds; not bool, not str."""
    return isinstance(value, Real) and not isinstance(value, bool)


def integer(value, what: str, minimum: int = 1, optional: bool = False) -> int | None:
    """An integer >= minimum as a plain int; None passes only when optional (the caller's default)."""
    if value is None and optional:
        return None
    if not is_integer(value) or value < minimum:
        raise InputError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def integers(value, what: str) -> tuple[int, ...] | None:
    """None (the default), one integer, or an iterable of integers >= 1; never empty."""
    if value is None:
        return None
    values = (value,) if is_integer(value) else _items(value, what, "an integer or a list of integers >= 1")
    if not values:
        raise InputError(f"{what} is empty; leave it out for the default")
    if not all(is_integer(v) and v >= 1 for v in values):
        raise InputError(f"{what} must be an integer or a list of integers >= 1, got {list(values)!r}")
    return tuple(int(v) for v in values)


def texts(value, what: str) -> tuple[str, ...] | None:
    """None, one string (one item, not its characters) or an iterable of strings."""
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    values = _items(value, what, "a string or a list of strings")
    if not all(isinstance(v, str) for v in values):
        raise InputError(f"{what} must be a string or a list of strings, got {list(values)!r}")
    return values


def positive_number(value, what: str, finite: bool = True) -> float:
    """A number > 0 as a float; NaN always refused (every comparison with it is False, so a NaN limit never
    fails), inf unless finite=False."""
    if not is_number(value) or not value > 0 or (finite and math.isinf(value)):
        kind = "a positive finite number" if finite else "a positive number"
        raise InputError(f"{what} must be {kind}, got {value!r}")
    return float(value)


def ratio(value, what: str) -> float:
    """A worsening limit (report diff, a recipe's baseline): a finite number >= 1, where 1.2 = 20% worse."""
    if not is_number(value) or not 1 <= value < math.inf:
        raise InputError(f"{what} is a ratio >= 1 (1.2 = 20% worse), got {value!r}")
    return float(value)


def _items(value, what: str, kind: str) -> tuple:
    """The iterable read once into a tuple (a generator checked first and then used would be empty)."""
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
        raise InputError(f"{what} must be {kind}, got {value!r}")
    return tuple(value)
