"""The ``[variant]`` table (pyproject-style) that gives providers and priorities."""

from __future__ import annotations

from typing import Any

from wheelforge.errors import InvalidInput
from wheelforge.variants.metadata import Schema, VariantMetadata, from_json
from wheelforge.variants.providers import PRESET_PRIORITY, PRESETS


def default_config() -> VariantMetadata:
    """Every preset, accelerators first: wheels tagged without a config stay mergeable."""
    return VariantMetadata(PRESET_PRIORITY, {ns: PRESETS[ns] for ns in PRESET_PRIORITY})


def config_from_table(table: Any, *, source: str) -> VariantMetadata:
    """Read a ``[variant]`` table: ``default-priorities.namespace`` and ``providers``.

    A namespace listed without a ``providers`` entry gets its preset. A provider with
    variantlib's ``build-requires`` (an ahead-of-time plugin) is refused: see
    :func:`build_requires_refused`.
    """
    if not isinstance(table, dict):
        raise InvalidInput(f"{source}: variant: expected a table")
    unknown = sorted(set(table) - {"default-priorities", "providers"})
    if unknown:
        raise InvalidInput(
            f"{source}: variant.{unknown[0]}: expected one of default-priorities, providers"
        )
    priorities = table.get("default-priorities", {})
    namespaces = priorities.get("namespace") if isinstance(priorities, dict) else None
    extra = sorted(set(priorities) - {"namespace"}) if isinstance(priorities, dict) else []
    if extra:
        raise InvalidInput(
            f"{source}: variant.default-priorities.{extra[0]}: unknown key; expected namespace"
        )
    if (
        not isinstance(namespaces, list)
        or not namespaces
        or not all(isinstance(ns, str) for ns in namespaces)
    ):
        raise InvalidInput(
            f"{source}: variant.default-priorities.namespace: expected a non-empty list "
            "of namespace names (strings)"
        )
    providers = table.get("providers", {})
    if not isinstance(providers, dict):
        raise InvalidInput(f"{source}: variant.providers: expected a table")
    providers = dict(providers)
    for namespace, entry in providers.items():
        if isinstance(entry, dict) and "build-requires" in entry:
            raise build_requires_refused(source, str(namespace))
    for namespace in namespaces:
        if namespace not in providers and isinstance(namespace, str):
            if namespace not in PRESETS:
                raise InvalidInput(
                    f"{source}: variant.providers.{namespace}: expected a provider entry "
                    f"(no preset for {namespace!r}; presets: {', '.join(PRESETS)})"
                )
            providers[namespace] = "preset"
    document = {
        "$schema": Schema.PROVIDERS_V0_2_0.value,
        "default-priorities": {"namespace": namespaces},
        "providers": {
            ns: _preset_json(ns) if entry == "preset" else entry for ns, entry in providers.items()
        },
    }
    try:
        return from_json(document, source=source)
    except InvalidInput as err:
        message = err.message.replace(f"{source}: ", f"{source}: variant.", 1)
        raise InvalidInput(message) from None


def build_requires_refused(source: str, namespace: str) -> InvalidInput:
    """variantlib 0.2.2's ahead-of-time plugins: refused, with what to write instead.

    variantlib runs such a plugin when it builds a wheel and writes what it reports
    (``get_supported_configs`` on the build machine) as the provider's
    ``static-properties``; the published files may not carry ``build-requires``
    (variantlib cannot write it into JSON, uv 0.13.8 refuses the release). wheelforge
    runs no plugin at build time, so the static properties are written by hand."""
    key = f"variant.providers.{namespace}"
    return InvalidInput(
        f"{source}: {key}.build-requires: ahead-of-time plugins (variantlib's "
        "build-requires) are not run by wheelforge",
        hint=f"write what the plugin reports on the build machine as {key}.static-properties "
        "(values best first; feature-order with two or more features): that is what "
        "variantlib expands build-requires to in the wheels it builds",
    )


def _preset_json(namespace: str) -> dict[str, Any]:
    provider = PRESETS[namespace]
    entry: dict[str, Any] = {"requires": list(provider.requires)}
    if provider.plugin_api:
        entry["plugin-api"] = provider.plugin_api
    return entry
