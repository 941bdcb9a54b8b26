"""Reading and validating the project's TOML files (device profiles, recipes): one-line errors naming file and key."""

from __future__ import annotations

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (JetPack 6 on a Jetson): the same parser, from PyPI
    import tomli as tomllib
from pathlib import Path

from .errors import InputError


def read_toml(path: str | Path, what: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {str(path)!r} does not exist or is not a file")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None


def validate_table(table: dict, schema: dict, where: str) -> None:
    """Unknown keys and wrong types (bool never passes for a number) are errors."""
    for key, value in table.items():
        if key not in schema:
            raise InputError(f"{where}: unknown key {key!r} (known: {', '.join(schema)})")
        want = schema[key]
        if not isinstance(value, want) or (isinstance(value, bool) and bool not in _types(want)):
            kind = want.__name__ if isinstance(want, type) else "number"
            raise InputError(f"{where}: {key!r} must be {kind}, got {type(value).__name__}")


def _types(want) -> tuple:
    return want if isinstance(want, tuple) else (want,)
