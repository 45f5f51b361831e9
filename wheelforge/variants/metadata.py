"""Variant metadata: ``*.dist-info/variant.json`` and ``{name}-{version}-variants.json``.

Both files share one shape. Every schema generation is read (legacy v0.0.3 as on
deployed PyTorch indexes, PEP 825 v0.1.1, providers v0.2.0) into one model; the
generation asked for is written, providers v0.2.0 by default.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from wheelforge.errors import InvalidInput
from wheelforge.formats import parse_json
from wheelforge.variants.abi_dependency import NAMESPACE as ABI_NAMESPACE
from wheelforge.variants.labels import NULL_LABEL, validate_label
from wheelforge.variants.properties import (
    NAME_PATTERN,
    VALUE_PATTERN,
    VariantProperties,
    flatten,
    nest,
)
from wheelforge.variants.providers import Provider


class Schema(enum.Enum):
    LEGACY_V0_0_3 = "https://variants-schema.wheelnext.dev/v0.0.3.json"
    PEP825_V0_1_1 = "https://variants-schema.wheelnext.dev/peps/825/v0.1.1.json"
    PROVIDERS_V0_2_0 = "https://variants-schema.wheelnext.dev/peps/850/v0.2.0.json"

    @property
    def short_name(self) -> str:
        return _SHORT_NAMES[self]


_SHORT_NAMES = {
    Schema.LEGACY_V0_0_3: "legacy-v0.0.3",
    Schema.PEP825_V0_1_1: "pep825-v0.1.1",
    Schema.PROVIDERS_V0_2_0: "providers-v0.2.0",
}
SCHEMA_BY_NAME = {schema.short_name: schema for schema in Schema}

# variantlib 0.2.x writes the providers generation under this older address.
_SCHEMA_BY_URL = {schema.value: schema for schema in Schema} | {
    "https://variants-schema.wheelnext.dev/v0.2.0.json": Schema.PROVIDERS_V0_2_0,
}


@dataclass(frozen=True)
class VariantMetadata:
    namespace_priorities: tuple[str, ...]
    providers: Mapping[str, Provider] = field(default_factory=dict)
    variants: Mapping[str, VariantProperties] = field(default_factory=dict)
    # Legacy v0.0.3 only: kept so that reading and writing that generation round-trips.
    feature_priorities: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    property_priorities: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    schema: Schema = Schema.PROVIDERS_V0_2_0
    # A ``$schema`` URL of no known generation, read by its shape (as uv does); written
    # back as ``schema``'s own URL.
    unknown_schema: str | None = field(default=None, compare=False)

    def single_label(self, source: str) -> str:
        """The one label of a wheel's ``variant.json``."""
        if len(self.variants) != 1:
            raise InvalidInput(
                f"{source}: 'variants' has {len(self.variants)} entries, expected exactly one"
            )
        return next(iter(self.variants))

    def namespaces_used(self) -> set[str]:
        return {prop.namespace for props in self.variants.values() for prop in props}


# -- reading -----------------------------------------------------------------------


class _Reader:
    """Type-checked access to decoded JSON; errors name the source and the key path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, expected: str) -> InvalidInput:
        return InvalidInput(f"{self.source}: {path}: expected {expected}")

    def mapping(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, "a JSON object")
        return value

    def names(self, value: Any, path: str, *, values: bool = False) -> tuple[str, ...]:
        pattern = VALUE_PATTERN if values else NAME_PATTERN
        if not isinstance(value, list) or not all(
            isinstance(item, str) and pattern.fullmatch(item) for item in value
        ):
            raise self.fail(path, f"a list of strings matching {pattern.pattern}")
        if len(set(value)) != len(value):
            raise self.fail(path, "no duplicate entries")
        return tuple(value)

    def strings(self, value: Any, path: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(i, str) and i for i in value):
            raise self.fail(path, "a list of non-empty strings")
        return tuple(value)

    def keys(self, obj: dict[str, Any], path: str, allowed: set[str]) -> None:
        unknown = sorted(set(obj) - allowed)
        if unknown:
            raise self.fail(f"{path}.{unknown[0]}", f"one of {', '.join(sorted(allowed))}")

    def variants(self, value: Any) -> dict[str, VariantProperties]:
        variants: dict[str, VariantProperties] = {}
        for label, nested in self.mapping(value, "variants").items():
            path = f"variants.{label}"
            try:
                validate_label(label)
            except InvalidInput as err:
                raise InvalidInput(f"{self.source}: {path}: {err.message}") from None
            namespaces = self.mapping(nested, path)
            checked: dict[str, dict[str, list[str]]] = {}
            for namespace, features in namespaces.items():
                self.names([namespace], f"{path}.{namespace}")
                checked[namespace] = {}
                for feature, values in self.mapping(features, f"{path}.{namespace}").items():
                    fpath = f"{path}.{namespace}.{feature}"
                    self.names([feature], fpath)
                    vals = self.names(values, fpath, values=True)
                    if not vals:
                        raise self.fail(fpath, "at least one value")
                    checked[namespace][feature] = list(vals)
            properties = flatten(checked)
            if (label == NULL_LABEL) != (not properties):
                raise self.fail(
                    path,
                    "no properties for the null variant"
                    if properties
                    else "at least one property (only 'null' may be empty)",
                )
            variants[label] = properties
        return variants

    def static_properties(self, value: Any, path: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
        features = self.mapping(value, path)
        self.names(list(features), path)
        return tuple(
            (feature, self.names(values, f"{path}.{feature}", values=True))
            for feature, values in features.items()
        )

    def provider(self, value: Any, path: str) -> Provider:
        entry = self.mapping(value, path)
        allowed = {"requires", "plugin-api", "optional", "static-properties", "feature-order"}
        self.keys(entry, path, allowed | {"builtin"})
        static = (
            self.static_properties(entry["static-properties"], f"{path}.static-properties")
            if "static-properties" in entry
            else ()
        )
        if "feature-order" in entry:
            order = self.names(entry["feature-order"], f"{path}.feature-order")
            if set(order) != {feature for feature, _ in static}:
                raise self.fail(
                    f"{path}.feature-order", "exactly the features of 'static-properties'"
                )
            values = dict(static)
            static = tuple((feature, values[feature]) for feature in order)
        elif len(static) > 1:
            raise self.fail(f"{path}.feature-order", "a list (required with 2+ static features)")
        return self._provider(
            path,
            requires=self.strings(entry.get("requires", []), f"{path}.requires"),
            plugin_api=self._optional_str(entry, "plugin-api", path),
            optional=self._bool(entry, "optional", path),
            static_properties=static,
            builtin=self._optional_str(entry, "builtin", path),
        )

    def legacy_provider(self, value: Any, path: str, static: Any) -> Provider:
        entry = self.mapping(value, path)
        self.keys(entry, path, {"requires", "plugin-api", "optional", "enable-if", "install-time"})
        install_time = entry.get("install-time", True)
        if not isinstance(install_time, bool):
            raise self.fail(f"{path}.install-time", "true or false")
        if not install_time:
            if static is None:
                raise self.fail(
                    f"static-properties.{path.rsplit('.', 1)[-1]}",
                    "static properties for a provider with install-time false",
                )
            return self._provider(path, static_properties=static)
        return self._provider(
            path,
            requires=self.strings(entry.get("requires", []), f"{path}.requires"),
            plugin_api=self._optional_str(entry, "plugin-api", path),
            optional=self._bool(entry, "optional", path),
            enable_if=self._optional_str(entry, "enable-if", path),
        )

    def _provider(self, path: str, **fields: Any) -> Provider:
        try:
            return Provider(**fields)
        except InvalidInput as err:
            raise InvalidInput(f"{self.source}: {path}: {err.message.split(': ', 1)[1]}") from None

    def _optional_str(self, entry: dict[str, Any], key: str, path: str) -> str | None:
        value = entry.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise self.fail(f"{path}.{key}", "a non-empty string")
        return value

    def _bool(self, entry: dict[str, Any], key: str, path: str) -> bool:
        value = entry.get(key, False)
        if not isinstance(value, bool):
            raise self.fail(f"{path}.{key}", "true or false")
        return value


def loads(text: str | bytes, *, source: str) -> VariantMetadata:
    """Parse a ``variant.json`` or ``*-variants.json`` of any schema generation."""
    return from_json(parse_json(text, source=source), source=source)


def from_json(data: Any, *, source: str) -> VariantMetadata:
    reader = _Reader(source)
    root = reader.mapping(data, "(top level)")
    url = root.get("$schema")
    schema = _SCHEMA_BY_URL.get(url) if isinstance(url, str) else None
    unknown = None
    if schema is None:
        if not isinstance(url, str) or not url:
            known = ", ".join(sorted(_SCHEMA_BY_URL))
            raise reader.fail("$schema", f"a schema URL such as one of {known}; got {url!r}")
        schema, unknown = schema_by_shape(root), url
    priorities = reader.mapping(root.get("default-priorities"), "default-priorities")
    namespaces = reader.names(priorities.get("namespace"), "default-priorities.namespace")
    variants = reader.variants(root.get("variants", {}))

    common = {"$schema", "default-priorities", "variants"}
    if schema is Schema.PEP825_V0_1_1:
        reader.keys(root, "(top level)", common)
        reader.keys(priorities, "default-priorities", {"namespace"})
        meta = VariantMetadata(namespaces, {}, variants, schema=schema)
    elif schema is Schema.PROVIDERS_V0_2_0:
        reader.keys(root, "(top level)", common | {"providers"})
        reader.keys(priorities, "default-priorities", {"namespace"})
        providers = {
            namespace: reader.provider(entry, f"providers.{namespace}")
            for namespace, entry in reader.mapping(root.get("providers"), "providers").items()
        }
        if set(providers) != set(namespaces):
            raise reader.fail(
                "providers",
                f"one entry per namespace of default-priorities.namespace "
                f"({', '.join(namespaces)}); got {', '.join(providers) or 'none'}",
            )
        meta = VariantMetadata(namespaces, providers, variants, schema=schema)
    else:
        meta = _legacy(reader, root, priorities, namespaces, variants)
    _check_namespaces(meta, reader)
    return replace(meta, unknown_schema=unknown) if unknown else meta


def schema_by_shape(root: Mapping[str, Any]) -> Schema:
    """The generation an unknown ``$schema`` URL's document is read as: by its shape, as
    uv 0.13.8 does (it logs the URL and parses the providers shape; legacy keys then fail
    as unknown keys, as they do in uv). Without ``providers``: PEP 825 v0.1.1."""
    return Schema.PROVIDERS_V0_2_0 if "providers" in root else Schema.PEP825_V0_1_1


def _legacy(
    reader: _Reader,
    root: dict[str, Any],
    priorities: dict[str, Any],
    namespaces: tuple[str, ...],
    variants: dict[str, VariantProperties],
) -> VariantMetadata:
    reader.keys(
        root,
        "(top level)",
        {"$schema", "default-priorities", "variants", "providers", "static-properties"},
    )
    reader.keys(priorities, "default-priorities", {"namespace", "feature", "property"})
    static = reader.mapping(root.get("static-properties", {}), "static-properties")
    feature_priorities = {
        namespace: reader.names(features, f"default-priorities.feature.{namespace}")
        for namespace, features in reader.mapping(
            priorities.get("feature", {}), "default-priorities.feature"
        ).items()
    }
    property_priorities = {
        namespace: {
            feature: reader.names(
                values, f"default-priorities.property.{namespace}.{feature}", values=True
            )
            for feature, values in reader.mapping(
                features, f"default-priorities.property.{namespace}"
            ).items()
        }
        for namespace, features in reader.mapping(
            priorities.get("property", {}), "default-priorities.property"
        ).items()
    }
    providers = {}
    for namespace, entry in reader.mapping(root.get("providers"), "providers").items():
        static_entry = static.get(namespace)
        static_props = (
            reader.static_properties(static_entry, f"static-properties.{namespace}")
            if static_entry is not None
            else None
        )
        providers[namespace] = reader.legacy_provider(entry, f"providers.{namespace}", static_props)
    # As variantlib 0.0.3 (VariantInfo): one provider per listed namespace, and static
    # properties exactly for the install-time false providers.
    if set(providers) != set(namespaces):
        raise reader.fail(
            "providers",
            f"one entry per namespace of default-priorities.namespace "
            f"({', '.join(namespaces)}); got {', '.join(providers) or 'none'}",
        )
    extra = sorted(ns for ns in static if ns not in providers or not providers[ns].is_static)
    if extra:
        raise reader.fail(
            f"static-properties.{extra[0]}",
            "static properties only for a provider with install-time false",
        )
    return VariantMetadata(
        namespaces,
        providers,
        variants,
        feature_priorities=feature_priorities,
        property_priorities=property_priorities,
        schema=Schema.LEGACY_V0_0_3,
    )


def _check_namespaces(meta: VariantMetadata, reader: _Reader) -> None:
    # abi_dependency is reserved: the installer provides it, listed or not.
    missing = sorted(meta.namespaces_used() - set(meta.namespace_priorities) - {ABI_NAMESPACE})
    if missing:
        raise reader.fail(
            "default-priorities.namespace", f"to list every namespace used; missing {missing[0]!r}"
        )


# -- writing -----------------------------------------------------------------------


def to_json(meta: VariantMetadata, schema: Schema = Schema.PROVIDERS_V0_2_0) -> dict[str, Any]:
    variants = {label: nest(props) for label, props in meta.variants.items()}
    out: dict[str, Any] = {
        "$schema": schema.value,
        "default-priorities": {"namespace": list(meta.namespace_priorities)},
    }
    if schema is Schema.PROVIDERS_V0_2_0:
        out["providers"] = {ns: _provider_json(p) for ns, p in meta.providers.items()}
    elif schema is Schema.LEGACY_V0_0_3:
        feature_priorities = _legacy_feature_priorities(meta)
        if feature_priorities:
            out["default-priorities"]["feature"] = feature_priorities
        if meta.property_priorities:
            out["default-priorities"]["property"] = {
                ns: {f: list(values) for f, values in features.items()}
                for ns, features in meta.property_priorities.items()
            }
        out["providers"] = {ns: _legacy_provider_json(ns, p) for ns, p in meta.providers.items()}
        static = {
            ns: {feature: list(values) for feature, values in p.static_properties}
            for ns, p in meta.providers.items()
            if p.is_static
        }
        if static:
            out["static-properties"] = static
    out["variants"] = variants
    return out


def _legacy_feature_priorities(meta: VariantMetadata) -> dict[str, list[str]]:
    """``default-priorities.feature`` for a legacy file. Legacy static properties have no
    ``feature-order``: their features are ordered by their keys, which :func:`dumps`
    sorts. So a static provider's order (two or more features) is written here, after
    any explicit priorities for its namespace, ranking as before."""
    written = {ns: list(features) for ns, features in meta.feature_priorities.items()}
    for namespace, provider in meta.providers.items():
        features = [feature for feature, _ in provider.static_properties]
        if len(features) > 1:
            listed = written.setdefault(namespace, [])
            listed += [feature for feature in features if feature not in listed]
    return written


def dumps(meta: VariantMetadata, schema: Schema = Schema.PROVIDERS_V0_2_0) -> str:
    """Deterministic JSON text (sorted keys, trailing newline)."""
    return json.dumps(to_json(meta, schema), indent=2, sort_keys=True) + "\n"


def _provider_json(provider: Provider) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if provider.requires:
        entry["requires"] = list(provider.requires)
    if provider.plugin_api is not None:
        entry["plugin-api"] = provider.plugin_api
    if provider.optional:
        entry["optional"] = True
    if provider.static_properties:
        entry["static-properties"] = {f: list(v) for f, v in provider.static_properties}
        if len(provider.static_properties) > 1:
            entry["feature-order"] = [f for f, _ in provider.static_properties]
    if provider.builtin is not None:
        entry["builtin"] = provider.builtin
    return entry


def _legacy_provider_json(namespace: str, provider: Provider) -> dict[str, Any]:
    if provider.builtin is not None:
        raise InvalidInput(
            f"providers.{namespace}: a 'builtin' provider cannot be written as legacy v0.0.3"
        )
    if provider.is_static:
        return {"install-time": False}
    entry = _provider_json(provider)
    if provider.enable_if is not None:
        entry["enable-if"] = provider.enable_if
    return entry
