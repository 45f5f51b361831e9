"""jinja2 as wheelforge uses it: every template renders in jinja2's immutable sandbox,
with no globals (``range``, ``cycler``, ``lipsum``, ``joiner``, ``namespace``, ``dict``)
but the variables it is given, and values that land in generated TOML or YAML are
written as quoted strings by :func:`toml_string` and :func:`yaml_string`, never as raw
template text."""

from __future__ import annotations

from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["SecurityError", "sandboxed", "toml_string", "yaml_string"]

_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n",
                 "\f": "\\f", "\r": "\\r"}  # fmt: skip
_YAML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def sandboxed(**options: Any) -> ImmutableSandboxedEnvironment:
    """A sandboxed environment (undefined names are errors) without jinja2's globals."""
    environment = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, **options)
    environment.globals.clear()
    return environment


def toml_string(value: object) -> str:
    """``value`` as a TOML basic string (``"..."``): quotes, backslashes and control
    characters escaped, so the text can neither end the string nor start a new line."""
    out = ['"']
    for char in str(value):
        if char in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def yaml_string(value: object) -> str:
    """``value`` as a YAML double-quoted scalar, printable ASCII only (everything else
    escaped), so it can neither end the scalar nor start a new line or key."""
    out = ['"']
    for char in str(value):
        code = ord(char)
        if char in _YAML_ESCAPES:
            out.append(_YAML_ESCAPES[char])
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)
