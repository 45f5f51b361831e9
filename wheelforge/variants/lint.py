"""Metadata that installers accept but whose variants can never be selected, or that
variantlib refuses: wheelforge reads it as uv 0.13.8 does (``select`` accepts it),
``tag`` refuses to write it, and ``check`` warns about it (docs/selection.md,
"wheelforge vs variantlib vs uv 0.13.8").

Pure functions: metadata in, one-line problems out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from wheelforge.variants.metadata import VariantMetadata
from wheelforge.variants.properties import VariantProperty

# variantlib's VALIDATION_PROVIDER_PLUGIN_API_REGEX: ``module`` or ``module:attr``.
PLUGIN_API = re.compile(r"[\w.]+(?:\s*:\s*[\w.]+)?")


def plugin_api_ok(value: str | None) -> bool:
    """``None`` (no plugin-api) or ``module`` / ``module:attr``."""
    return value is None or PLUGIN_API.fullmatch(value) is not None


def plugin_api_problems(meta: VariantMetadata) -> list[str]:
    """A ``plugin-api`` that is not ``module`` or ``module:attr`` (e.g. ``foo:bar:baz``):
    variantlib refuses the file; uv treats the provider as an unknown plugin; no plugin
    can be loaded from it, so its variants are never selected."""
    return [
        f"providers.{namespace}.plugin-api {provider.plugin_api!r}: expected 'module' or "
        "'module:attribute'; no plugin can be loaded from it, so its variants are never "
        "selected (variantlib refuses the file)"
        for namespace, provider in meta.providers.items()
        if not plugin_api_ok(provider.plugin_api)
    ]


def empty_static_problems(meta: VariantMetadata) -> list[str]:
    """A static feature with no values: nothing using it is ever selected (uv reads the
    file; variantlib refuses it)."""
    return [
        f"providers.{namespace}.static-properties.{feature}: an empty list; a variant "
        "with this feature is never selected (variantlib refuses the file)"
        for namespace, provider in meta.providers.items()
        for feature, values in provider.static_properties
        if not values
    ]


def outside_static_problems(
    meta: VariantMetadata, properties: Iterable[VariantProperty]
) -> list[str]:
    """Properties of a static provider's namespace whose feature has none of its values
    among the provider's declared ones: the variant is never selected (uv picks another
    wheel; variantlib's make-variant refuses)."""
    by_feature: dict[tuple[str, str], list[str]] = {}
    for prop in properties:
        by_feature.setdefault(prop.feature_key, []).append(prop.value)
    problems = []
    for (namespace, feature), values in sorted(by_feature.items()):
        provider = meta.providers.get(namespace)
        if provider is None or not provider.is_static:
            continue
        declared = dict(provider.static_properties).get(feature, ())
        if not set(values) & set(declared):
            have = ", ".join(declared) if declared else "none"
            problems.append(
                f"{namespace} :: {feature} :: {'|'.join(sorted(values))}: not among the "
                f"static provider's declared values ({have}); this variant is never selected"
            )
    return problems


def unknown_schema_problems(meta: VariantMetadata) -> list[str]:
    if meta.unknown_schema is None:
        return []
    return [
        f"$schema {meta.unknown_schema!r} is no known schema generation; installers read "
        f"it by its shape ({meta.schema.short_name}), as uv 0.13.8 does; wheelforge writes "
        f"{meta.schema.value}"
    ]


def provider_problems(meta: VariantMetadata) -> list[str]:
    """What is wrong with ``meta``'s providers alone (items 5 and 6)."""
    return plugin_api_problems(meta) + empty_static_problems(meta)
