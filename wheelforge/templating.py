"""jinja2 as wheelforge uses it: every template renders in jinja2's immutable sandbox,
with no globals (``range``, ``cycler``, ``lipsum``, ``joiner``, ``namespace``, ``dict``)
but the variables it is given."""

from __future__ import annotations

from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["SecurityError", "sandboxed"]


def sandboxed(**options: Any) -> ImmutableSandboxedEnvironment:
    """A sandboxed environment (undefined names are errors) without jinja2's globals."""
    environment = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, **options)
    environment.globals.clear()
    return environment
