"""Merging variant metadata into one ``*-variants.json``: order-independent."""

from __future__ import annotations

from collections.abc import Iterable

from wheelforge.errors import InvalidInput
from wheelforge.variants.metadata import VariantMetadata


class MergeConflict(InvalidInput):
    """Two sources disagree; the message names both."""


def merge(
    a: VariantMetadata, b: VariantMetadata, *, names: tuple[str, str] = ("a", "b")
) -> VariantMetadata:
    """Union of variants; namespace priorities equal or one a prefix of the other (keep the
    longer); providers equal per namespace. ``names`` label the two sources in errors."""
    first, second = names
    short, long_ = sorted((a.namespace_priorities, b.namespace_priorities), key=len)
    if long_[: len(short)] != short:
        raise MergeConflict(
            f"{first} and {second} disagree on default-priorities.namespace: "
            f"{list(a.namespace_priorities)} vs {list(b.namespace_priorities)} "
            "(expected equal lists, or one a prefix of the other)"
        )
    variants = dict(a.variants)
    for label, props in b.variants.items():
        if label in variants and variants[label] != props:
            raise MergeConflict(
                f"{first} and {second} give label {label!r} different properties: "
                f"{sorted(map(str, variants[label]))} vs {sorted(map(str, props))}"
            )
        variants[label] = props
    providers = dict(a.providers)
    for namespace, provider in b.providers.items():
        if namespace in providers and providers[namespace] != provider:
            raise MergeConflict(
                f"{first} and {second} declare different providers for namespace {namespace!r}"
            )
        providers[namespace] = provider
    for field in ("feature_priorities", "property_priorities"):
        if getattr(a, field) and getattr(b, field) and getattr(a, field) != getattr(b, field):
            raise MergeConflict(f"{first} and {second} disagree on legacy {field}")
    return VariantMetadata(
        namespace_priorities=long_,
        providers=dict(sorted(providers.items())),
        variants=dict(sorted(variants.items())),
        feature_priorities=a.feature_priorities or b.feature_priorities,
        property_priorities=a.property_priorities or b.property_priorities,
        schema=a.schema,
    )


def merge_all(sources: Iterable[tuple[str, VariantMetadata]]) -> VariantMetadata:
    """Merge named metadata; a conflict names the two sources that disagree."""
    merged: VariantMetadata | None = None
    origin: dict[str, str] = {}  # label -> the source that brought it
    first_name = ""
    for name, meta in sources:
        if merged is None:
            merged, first_name = meta, name
            origin = dict.fromkeys(meta.variants, name)
            continue
        clashing = [
            origin[label]
            for label, props in meta.variants.items()
            if label in merged.variants and merged.variants[label] != props
        ]
        merged = merge(merged, meta, names=(clashing[0] if clashing else first_name, name))
        for label in meta.variants:
            origin.setdefault(label, name)
    if merged is None:
        raise InvalidInput("nothing to merge: no variant metadata given")
    return merged
