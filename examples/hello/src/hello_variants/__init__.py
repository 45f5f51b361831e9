"""A sample package: reports which variant wheel it was installed from."""

from __future__ import annotations

import json
from importlib.metadata import distribution


def installed_variant() -> str:
    """The variant label of the installed wheel, or ``"plain"``."""
    text = distribution("hello-variants").read_text("variant.json")
    if text is None:
        return "plain"
    return next(iter(json.loads(text)["variants"]))
