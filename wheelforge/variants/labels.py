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


MAX_NEW_LABEL = 64  # wheelforge's own limit, so a wheel's file name stays under 255 bytes


def validate_new_label(label: str) -> str:
    """A label wheelforge is to write into a file name: valid, and at most
    :data:`MAX_NEW_LABEL` characters."""
    validate_label(label)
    if len(label) > MAX_NEW_LABEL:
        raise InvalidInput(
            f"variant label {label[:16]!r}…: {len(label)} characters; expected at most "
            f"{MAX_NEW_LABEL} (it goes into the wheel's file name)"
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
