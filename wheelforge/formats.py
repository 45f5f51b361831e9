"""Reading JSON and TOML that anyone may have written: every way a document can be
bad (not UTF-8, not valid, nested deeper than the parser can recurse, an integer too
long to convert) is one :class:`InvalidInput` naming the source, never another
exception."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from wheelforge.errors import InvalidInput


def parse_json(data: str | bytes, *, source: str) -> Any:
    """The JSON value of ``data``."""
    try:
        return json.loads(data)
    except RecursionError:
        raise InvalidInput(f"{source}: not valid JSON (nested too deeply)") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{source}: not valid JSON (not UTF-8 text)") from None
    except ValueError as err:  # JSONDecodeError, and the int-string conversion limit
        raise InvalidInput(f"{source}: not valid JSON ({err})") from None


def parse_toml(data: str | bytes, *, source: str) -> dict[str, Any]:
    """The TOML document ``data``."""
    try:
        text = data.decode() if isinstance(data, bytes) else data
    except UnicodeDecodeError as err:
        raise InvalidInput(f"{source}: not valid TOML (not UTF-8 text: byte {err.start})") from None
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise InvalidInput(f"{source}: not valid TOML (nested too deeply)") from None
    except ValueError as err:  # TOMLDecodeError, and the int-string conversion limit
        raise InvalidInput(f"{source}: not valid TOML ({err})") from None


def read_toml(path: Path, *, what: str = "file") -> dict[str, Any]:
    """The TOML document in ``path``; a missing or unreadable file is one error line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise InvalidInput(f"{path}: is a directory; expected a {what} (*.toml)") from None
    except OSError as err:
        raise InvalidInput(f"{path}: cannot read the {what} ({err.strerror})") from None
    return parse_toml(data, source=str(path))


def table_at(document: Any, *keys: str, source: str) -> dict[str, Any] | None:
    """``document[k1][k2]…`` when every step is a table; None when a key is missing;
    an error naming the key when a step is not a table."""
    value = document
    for depth, key in enumerate(keys):
        if not isinstance(value, dict):
            raise InvalidInput(f"{source}: {'.'.join(keys[:depth])}: expected a table")
        value = value.get(key)
        if value is None:
            return None
    if not isinstance(value, dict):
        raise InvalidInput(f"{source}: {'.'.join(keys)}: expected a table")
    return value
