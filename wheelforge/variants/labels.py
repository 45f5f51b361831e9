"""Variant labels: validation and the default (hash) label."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from wheelforge.errors import InvalidInput
from wheelforge.variants.properties import VariantProperty

NULL_LABEL = "null"
LABEL_PATTERN = re.compile(r"[0-9a-z_.]+")


def validate_label(label: str) -> str:
    if not LABEL_PATTERN.fullmatch(label):
        raise InvalidInput(
            f"variant label {label!r}: expected lowercase letters, digits, '_' or '.' "
            f"(pattern {LABEL_PATTERN.pattern})"
        )
    return label


def default_label(properties: Iterable[VariantProperty]) -> str:
    """The first 8 hex digits of sha256 over the sorted properties (variantlib's rule)."""
    props = sorted(set(properties))
    if not props:
        return NULL_LABEL
    digest = hashlib.sha256()
    for prop in props:
        digest.update(f"{prop}\n".encode())
    return digest.hexdigest()[:8]
