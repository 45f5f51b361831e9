"""Variant properties: ``namespace :: feature :: value``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from wheelforge.errors import InvalidInput

NAME_PATTERN = re.compile(r"[a-z0-9_]+")
VALUE_PATTERN = re.compile(r"[a-z0-9_.]+")
_PROPERTY = re.compile(r"\s*([^:\s]*)\s*::\s*([^:\s]*)\s*::\s*([^:\s]*)\s*")


@dataclass(frozen=True, order=True)
class VariantProperty:
    namespace: str
    feature: str
    value: str

    def __post_init__(self) -> None:
        for part, text, pattern in (
            ("namespace", self.namespace, NAME_PATTERN),
            ("feature", self.feature, NAME_PATTERN),
            ("value", self.value, VALUE_PATTERN),
        ):
            if not pattern.fullmatch(text):
                raise InvalidInput(
                    f"variant property {self.namespace} :: {self.feature} :: {self.value}: "
                    f"{part} {text!r} must match {pattern.pattern}"
                )

    @classmethod
    def parse(cls, text: str) -> VariantProperty:
        """Parse ``ns :: feature :: value`` (whitespace around ``::`` is ignored)."""
        match = _PROPERTY.fullmatch(text)
        if match is None:
            raise InvalidInput(
                f"variant property {text!r}: expected 'namespace :: feature :: value'"
            )
        return cls(*match.groups())

    @property
    def feature_key(self) -> tuple[str, str]:
        return (self.namespace, self.feature)

    def __str__(self) -> str:
        return f"{self.namespace} :: {self.feature} :: {self.value}"


VariantProperties = frozenset[VariantProperty]


def nest(properties: Iterable[VariantProperty]) -> dict[str, dict[str, list[str]]]:
    """``{namespace: {feature: [values]}}``, everything sorted: the JSON shape."""
    nested: dict[str, dict[str, list[str]]] = {}
    for prop in sorted(properties):
        nested.setdefault(prop.namespace, {}).setdefault(prop.feature, []).append(prop.value)
    return nested


def flatten(nested: dict[str, dict[str, list[str]]]) -> VariantProperties:
    """The inverse of :func:`nest`."""
    return frozenset(
        VariantProperty(namespace, feature, value)
        for namespace, features in nested.items()
        for feature, values in features.items()
        for value in values
    )
