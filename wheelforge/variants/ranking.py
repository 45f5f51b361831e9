"""PEP 825 ranking: which variant an installer picks on a machine.

Implemented once; the selector and ``check`` both rank with it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from wheelforge.variants.abi_dependency import namespace_order
from wheelforge.variants.metadata import VariantMetadata
from wheelforge.variants.properties import VariantProperty

Supported = Mapping[str, Mapping[str, Sequence[str]]]
"""What a machine supports: ``{namespace: {feature: [values, best first]}}``; the order
of a namespace's features is their priority."""

PropertyKey = tuple[int, int, int]
_LAST: PropertyKey = (sys.maxsize, sys.maxsize, sys.maxsize)


@dataclass(frozen=True)
class Ranked:
    """One candidate: a variant label, or ``None`` for a plain (unlabelled) wheel."""

    label: str | None
    unsupported: tuple[tuple[str, str], ...]  # (namespace, feature) with no supported value
    keys: tuple[PropertyKey, ...]  # sorted (namespace, feature, value) indices

    @property
    def compatible(self) -> bool:
        return not self.unsupported

    def sort_key(self) -> tuple[int, tuple[PropertyKey, ...], str]:
        if self.label is None:
            return (1, (), "")
        # The sentinel makes a longer key list win over its own prefix, and puts
        # the null variant (no keys) after every compatible variant.
        return (0, (*self.keys, _LAST), self.label)


def with_priorities(
    supported: Supported,
    feature_priorities: Mapping[str, Sequence[str]],
    property_priorities: Mapping[str, Mapping[str, Sequence[str]]],
) -> dict[str, dict[str, Sequence[str]]]:
    """Reorder what a machine supports by explicit (legacy v0.0.3) priorities, as
    variantlib's sort does: in a namespace, the features listed in
    ``feature_priorities`` come first in that order, then the others in the provider's
    order; in a feature, the values listed in ``property_priorities`` come first, then
    the other supported values in the provider's order. A listed feature or value the
    machine does not support changes nothing."""
    ordered: dict[str, dict[str, Sequence[str]]] = {}
    for namespace, features in supported.items():
        explicit = list(feature_priorities.get(namespace, ()))
        names = sorted(
            features,
            key=lambda f: explicit.index(f) if f in explicit else len(explicit),
        )
        value_order = property_priorities.get(namespace, {})
        ordered[namespace] = {}
        for feature in names:
            first = list(value_order.get(feature, ()))
            ordered[namespace][feature] = sorted(
                features[feature],
                key=lambda v: first.index(v) if v in first else len(first),
            )
    return ordered


def with_static_providers(
    meta: VariantMetadata, supported: Supported
) -> dict[str, dict[str, Sequence[str]]]:
    """Add what static providers declare: their properties are supported everywhere."""
    combined = {ns: dict(features) for ns, features in supported.items()}
    for namespace, provider in meta.providers.items():
        if provider.is_static:
            combined[namespace] = dict(provider.static_properties)
    return combined


def evaluate(
    label: str | None,
    properties: Iterable[VariantProperty],
    namespace_priorities: Sequence[str],
    supported: Supported,
) -> Ranked:
    best: dict[tuple[str, str], PropertyKey] = {}
    named: set[tuple[str, str]] = set()
    for prop in properties:
        named.add(prop.feature_key)
        features = supported.get(prop.namespace, {})
        values = features.get(prop.feature, ())
        if prop.value not in values or prop.namespace not in namespace_priorities:
            continue
        key = (
            namespace_priorities.index(prop.namespace),
            list(features).index(prop.feature),
            list(values).index(prop.value),
        )
        if prop.feature_key not in best or key < best[prop.feature_key]:
            best[prop.feature_key] = key
    return Ranked(
        label=label,
        unsupported=tuple(sorted(named - set(best))),
        keys=tuple(sorted(best.values())),
    )


def rank(
    meta: VariantMetadata,
    supported: Supported,
    *,
    plain: bool = False,
) -> list[Ranked]:
    """Every candidate, compatible ones first in order of preference, then the rest.

    ``plain`` adds a plain wheel (label ``None``), which ranks after the null variant.
    """
    support = with_static_providers(meta, supported)
    if meta.feature_priorities or meta.property_priorities:
        support = with_priorities(support, meta.feature_priorities, meta.property_priorities)
    candidates = [
        evaluate(label, props, namespace_order(meta.namespace_priorities), support)
        for label, props in meta.variants.items()
    ]
    if plain:
        candidates.append(Ranked(None, (), ()))
    compatible = sorted((c for c in candidates if c.compatible), key=Ranked.sort_key)
    rest = sorted((c for c in candidates if not c.compatible), key=lambda c: c.label or "")
    return compatible + rest


def best(meta: VariantMetadata, supported: Supported, *, plain: bool = False) -> Ranked | None:
    ranked = rank(meta, supported, plain=plain)
    return ranked[0] if ranked and ranked[0].compatible else None
