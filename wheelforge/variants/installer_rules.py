"""What uv 0.13.8 refuses in variant metadata: the one place that knows the installer's rules.

Each rule was found by running uv 0.13.8 (``--preview-features wheel-variants``) on a
find-links directory, and ``tests/test_conformance_uv.py`` re-runs uv on every rule.
uv parses a variants file strictly, by shape (an unknown ``$schema`` URL, legacy
v0.0.3's included, is only logged), and one refusal fails the **whole release**: uv
does not fall back to the plain wheel; it stops with "Failed to parse variant
metadata". In a wheel's own ``variant.json``, or in its METADATA, a refusal fails the
install on every machine where uv picks that wheel.

Not refusals (uv installs): a legacy ``$schema`` URL alone, an unknown ``$schema``
URL, a file without ``providers`` under any ``$schema`` but PEP 850's (uv then picks
none of its variants), long labels.

Pure: decoded JSON and strings in, findings out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from wheelforge.errors import InvalidInput
from wheelforge.formats import parse_json
from wheelforge.variants.labels import LABEL_PATTERN, NULL_LABEL
from wheelforge.variants.properties import NAME_PATTERN, VALUE_PATTERN

INSTALLER = "uv 0.13.8"
# The one address under which uv requires ``providers``; under any other (PEP 825
# v0.1.1, legacy, variantlib's v0.2.0 address, unknown) a file without it is read and
# none of its variants is picked.
PEP850_SCHEMA = "https://variants-schema.wheelnext.dev/peps/850/v0.2.0.json"

_TOP_LEVEL = ("$schema", "default-priorities", "variants", "providers")
# uv's untagged enum ProviderKind: an entry's keys must fit one of these.
_PROVIDER_KINDS = (
    frozenset({"requires", "plugin-api", "optional"}),
    frozenset({"static-properties", "feature-order", "optional"}),
    frozenset({"builtin", "optional"}),
)
_LEGACY_PROVIDER_KEYS = {
    "enable-if": "a legacy v0.0.3 key (write the providers schema, wheelforge's default)",
    "install-time": "a legacy v0.0.3 key (write the providers schema, wheelforge's default)",
    "build-requires": "variantlib's ahead-of-time plugins, for pyproject.toml only",
}
_PROVIDER_KIND_ERROR = "data did not match any variant of untagged enum ProviderKind"
VARIANT_MARKERS = ("variant_label", "variant_namespaces", "variant_features", "variant_properties")
_MARKER_NAME = re.compile(r"\b(" + "|".join(VARIANT_MARKERS) + r")\b")
_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")


@dataclass(frozen=True)
class Rejection:
    """One thing uv refuses: where (a key path, or ``Requires-Dist``) and why, with
    what uv says."""

    key: str
    reason: str

    def line(self, scope: str) -> str:
        """``scope``: what fails, e.g. ``"this release"``."""
        return f"{INSTALLER} would reject {scope}: {self.key}: {self.reason}"


def file_rejections(data: bytes, *, source: str) -> tuple[Rejection, ...]:
    """What uv 0.13.8 refuses in a variant metadata file's bytes (nothing if it is not
    JSON: wheelforge's own reader says so)."""
    try:
        return metadata_rejections(parse_json(data, source=source))
    except InvalidInput:
        return ()


def metadata_rejections(data: Any) -> tuple[Rejection, ...]:
    """What uv 0.13.8 refuses in a decoded ``variant.json`` or ``*-variants.json``.

    Shapes uv cannot read at all (not an object, a list where an object belongs) are
    left to wheelforge's own reader, which names them."""
    if not isinstance(data, dict):
        return ()
    found: list[Rejection] = []
    for key in data:
        if key not in _TOP_LEVEL:
            why = (
                "the legacy v0.0.3 top-level static properties (write them in the "
                "provider entry: providers.NS.static-properties)"
                if key == "static-properties"
                else "an unknown top-level key"
            )
            found.append(Rejection(key, f"{why} (uv: unknown field `{key}`)"))
    namespaces = _priorities(data.get("default-priorities"), found)
    providers = data.get("providers")
    if providers is None and data.get("$schema") == PEP850_SCHEMA and namespaces:
        providers = {}  # uv reads the PEP 850 schema's missing providers as none
    _providers(providers, namespaces, found)
    _variants(data.get("variants"), namespaces, found)
    return tuple(found)


def _priorities(priorities: Any, found: list[Rejection]) -> list[str] | None:
    if not isinstance(priorities, dict):
        return None
    for key in priorities:
        if key != "namespace":
            legacy = key in {"feature", "property"}
            why = (
                "legacy v0.0.3 explicit priorities (the providers schema, wheelforge's "
                "default, has none)"
                if legacy
                else "an unknown key"
            )
            found.append(
                Rejection(
                    f"default-priorities.{key}",
                    f"{why} (uv: unknown field `{key}`, expected `namespace`)",
                )
            )
    namespaces = priorities.get("namespace")
    if not isinstance(namespaces, list):
        return None
    for namespace in namespaces:
        if not isinstance(namespace, str) or not NAME_PATTERN.fullmatch(namespace):
            found.append(
                Rejection(
                    "default-priorities.namespace",
                    f"namespace {namespace!r} (uv: Invalid variant namespace)",
                )
            )
    if not namespaces or len(set(map(str, namespaces))) != len(namespaces):
        found.append(
            Rejection(
                "default-priorities.namespace",
                "empty or with a namespace twice (uv: Variant namespace priorities must be "
                "non-empty and unique)",
            )
        )
    return [str(ns) for ns in namespaces]


def _providers(providers: Any, namespaces: list[str] | None, found: list[Rejection]) -> None:
    if not isinstance(providers, dict):
        return  # absent: uv reads the file and picks none of its variants
    if namespaces is not None and set(providers) != set(namespaces):
        missing = sorted(set(namespaces) - set(providers))
        extra = sorted(set(providers) - set(namespaces))
        detail = "; ".join(
            part
            for part in (
                f"no entry for {', '.join(missing)}" if missing else "",
                f"an entry for {', '.join(extra)}, not in default-priorities.namespace"
                if extra
                else "",
            )
            if part
        )
        found.append(
            Rejection(
                "providers",
                f"{detail} (uv: Variant providers must match the namespaces in "
                "default-priorities.namespace)",
            )
        )
    for namespace, entry in providers.items():
        if isinstance(entry, dict):
            _provider(f"providers.{namespace}", entry, found)


def _provider(path: str, entry: Mapping[str, Any], found: list[Rejection]) -> None:
    keys = set(entry)
    for key in sorted(keys & set(_LEGACY_PROVIDER_KEYS)):
        found.append(
            Rejection(f"{path}.{key}", f"{_LEGACY_PROVIDER_KEYS[key]} (uv: {_PROVIDER_KIND_ERROR})")
        )
    if keys & set(_LEGACY_PROVIDER_KEYS):
        return
    if not any(keys <= kind for kind in _PROVIDER_KINDS):
        found.append(
            Rejection(
                path,
                f"keys {', '.join(sorted(keys))} mix provider kinds (one of requires, "
                f"static-properties, builtin) (uv: {_PROVIDER_KIND_ERROR})",
            )
        )
        return
    if "optional" in entry and not isinstance(entry["optional"], bool):
        found.append(Rejection(f"{path}.optional", "not true or false (uv: expected a boolean)"))
    if "requires" in entry and not isinstance(entry["requires"], list):
        found.append(Rejection(f"{path}.requires", f"not a list (uv: {_PROVIDER_KIND_ERROR})"))
    static = entry.get("static-properties")
    if isinstance(static, dict) and len(static) > 1 and "feature-order" not in entry:
        found.append(
            Rejection(
                f"{path}.feature-order",
                "missing with two or more static features (uv: must define feature-order "
                "for multiple static features)",
            )
        )


def _variants(variants: Any, namespaces: list[str] | None, found: list[Rejection]) -> None:
    if not isinstance(variants, dict):
        return
    unlisted: set[str] = set()
    for label, nested in variants.items():
        path = f"variants.{label}"
        if not LABEL_PATTERN.fullmatch(label):
            found.append(
                Rejection(
                    path,
                    f"label {label!r} is not lowercase letters, digits, '_' and '.' (uv: "
                    "Variant label must contain only lowercase ASCII letters, digits, "
                    "underscores, and periods)",
                )
            )
        if not isinstance(nested, dict):
            continue
        if label == NULL_LABEL and any(nested.values()):
            found.append(
                Rejection(
                    path,
                    "the null variant has properties (uv: The null variant must not have "
                    "properties)",
                )
            )
        for namespace, features in nested.items():
            if not NAME_PATTERN.fullmatch(namespace):
                found.append(
                    Rejection(
                        f"{path}.{namespace}",
                        f"namespace {namespace!r} (uv: Invalid variant namespace)",
                    )
                )
            elif namespaces is not None and namespace not in namespaces and features:
                unlisted.add(namespace)  # a namespace without features is not used
            if not isinstance(features, dict):
                continue
            for feature, values in features.items():
                if not NAME_PATTERN.fullmatch(feature):
                    found.append(
                        Rejection(
                            f"{path}.{namespace}.{feature}",
                            f"feature {feature!r} (uv: Invalid variant feature)",
                        )
                    )
                if not isinstance(values, list):
                    continue
                fpath = f"{path}.{namespace}.{feature}"
                if not values:
                    found.append(Rejection(fpath, "no value (uv: must have at least one value)"))
                elif len(set(map(str, values))) != len(values):
                    found.append(
                        Rejection(fpath, "a value twice (uv: must not contain duplicate values)")
                    )
                for value in values:
                    if isinstance(value, str) and not VALUE_PATTERN.fullmatch(value):
                        found.append(
                            Rejection(fpath, f"value {value!r} (uv: Invalid variant value)")
                        )
    for namespace in sorted(unlisted):
        found.append(
            Rejection(
                "default-priorities.namespace",
                f"does not list {namespace!r}, which a variant uses (uv: Variant namespace "
                f"`{namespace}` is missing from default-priorities.namespace)",
            )
        )


def marker_rejections(requires_dist: Iterable[str]) -> tuple[Rejection, ...]:
    """Variant markers in a wheel's ``Requires-Dist``: uv 0.13.8 cannot parse them
    ("Expected a quoted string or a valid marker name") and fails the install wherever
    it picks that wheel."""
    found = []
    for line in requires_dist:
        _, _, marker = line.partition(";")
        names = sorted(set(_MARKER_NAME.findall(_QUOTED.sub(" ", marker))))
        if names:
            found.append(
                Rejection(
                    "Requires-Dist",
                    f"{line.strip()!r} uses the variant marker {names[0]} (uv: Expected a "
                    "quoted string or a valid marker name); put the requirement in that "
                    "variant's own METADATA without a marker",
                )
            )
    return tuple(found)
