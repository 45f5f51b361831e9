"""What a machine supports for one release: its detected (or profiled, or assumed)
properties for the namespaces whose provider is one wheelforge knows, and third-party
plugins only where the user trusts them.

As in uv, a namespace's detection applies only when the release declares that
namespace's provider exactly as the standard presets do; any other provider is a
third-party plugin, which means running a package's code at install time, so it runs
only for ``--trust-provider NS`` (or ``WHEELFORGE_TRUST_PROVIDERS=ns,ns``); otherwise
that namespace's variants count as unsupported, as the providers spec requires.

A provider marked ``"optional": true`` is off unless enabled with ``--enable-optional NS``
(or ``WHEELFORGE_ENABLE_OPTIONAL=ns,ns``), whatever its kind: uv 0.13.8 ignores an
optional provider (plugin, builtin or static) and variantlib skips an optional plugin
unless asked; while off, its variants count as unsupported. A trusted
plugin runs out of process (:mod:`wheelforge.select.plugins`), never imported here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from wheelforge.select.plugins import PLUGIN_GROUP, PluginFailed, TrustedPlugins
from wheelforge.select.profiles import with_assumed
from wheelforge.variants.abi_dependency import NAMESPACE as ABI_NAMESPACE
from wheelforge.variants.abi_dependency import Environment as AbiEnvironment
from wheelforge.variants.lint import plugin_api_ok
from wheelforge.variants.metadata import VariantMetadata
from wheelforge.variants.properties import VariantProperty
from wheelforge.variants.providers import PRESETS, Provider
from wheelforge.variants.ranking import Supported

TRUST_VARIABLE = "WHEELFORGE_TRUST_PROVIDERS"
OPTIONAL_VARIABLE = "WHEELFORGE_ENABLE_OPTIONAL"

PluginLoader = Callable[[str, Provider], dict[str, list[str]] | None]
"""``(namespace, its provider) -> {feature: [values]}``, or None where no plugin is found."""


def trusted_from_env(env: Mapping[str, str] | None = None) -> frozenset[str]:
    return _namespaces_from_env(TRUST_VARIABLE, env)


def enabled_optional_from_env(env: Mapping[str, str] | None = None) -> frozenset[str]:
    return _namespaces_from_env(OPTIONAL_VARIABLE, env)


def _namespaces_from_env(variable: str, env: Mapping[str, str] | None) -> frozenset[str]:
    value = (env if env is not None else os.environ).get(variable, "")
    return frozenset(ns.strip() for ns in value.split(",") if ns.strip())


def optional_off(meta: VariantMetadata | None, enabled: frozenset[str]) -> tuple[str, ...]:
    """The namespaces of ``meta`` whose provider is optional and not enabled."""
    if meta is None:
        return ()
    return tuple(ns for ns, p in meta.providers.items() if p.optional and ns not in enabled)


def without_providers(meta: VariantMetadata, namespaces: Sequence[str]) -> VariantMetadata:
    """``meta`` as the ranking should see it with ``namespaces``' providers off: a static
    provider that is off adds no properties."""
    if not namespaces:
        return meta
    kept = {ns: p for ns, p in meta.providers.items() if ns not in namespaces}
    return replace(meta, providers=kept)


def optional_note(namespace: str) -> str:
    return (
        f"{namespace}: its provider is optional, off by default (as in uv and variantlib); "
        f"its variants count as unsupported (--enable-optional {namespace} turns it on)"
    )


def is_known_provider(namespace: str, provider: Provider) -> bool:
    """Declared as the preset: same package (any version specifier admitting 0.0.1)
    and the same plugin API."""
    preset = PRESETS.get(namespace)
    if preset is None or not provider.requires or provider.plugin_api != preset.plugin_api:
        return False
    try:
        requirement = Requirement(provider.requires[0])
    except InvalidRequirement:
        return False
    same_name = canonicalize_name(requirement.name) == canonicalize_name(preset.requires[0])
    return same_name and requirement.specifier.contains("0.0.1", prereleases=True)


@dataclass(frozen=True)
class Machine:
    known: Supported  # the namespaces wheelforge detects itself (or a profile describes)
    assumed: tuple[VariantProperty, ...] = ()
    trusted: frozenset[str] = frozenset()
    plugins: PluginLoader = field(default_factory=TrustedPlugins, compare=False)
    enabled_optional: frozenset[str] = frozenset()  # optional providers turned on
    abi: AbiEnvironment | None = None  # the target environment's packages (abi_dependency)

    def for_release(self, meta: VariantMetadata | None) -> tuple[Supported, list[str]]:
        """What this machine supports for ``meta``'s providers, and notes on the
        namespaces it cannot judge."""
        supported: dict[str, Mapping[str, Sequence[str]]] = {}
        off = optional_off(meta, self.enabled_optional)
        notes = [optional_note(namespace) for namespace in off]
        for namespace, provider in meta.providers.items() if meta else ():
            if namespace == ABI_NAMESPACE:
                continue  # reserved: derived from the target environment below
            if provider.is_static or namespace in off:
                continue  # the ranking adds static properties itself (if not off)
            if is_known_provider(namespace, provider):
                if namespace in self.known:
                    supported[namespace] = self.known[namespace]
                continue
            what = provider.requires[0] if provider.requires else f"builtin {provider.builtin}"
            if namespace not in self.trusted:
                notes.append(
                    f"{namespace}: provider {what!r} is a third-party plugin; its variants "
                    f"count as unsupported (--trust-provider {namespace} runs it)"
                )
                continue
            if not plugin_api_ok(provider.plugin_api):
                notes.append(
                    f"{namespace}: trusted, but its plugin-api {provider.plugin_api!r} is not "
                    "'module:attribute'; no plugin is loaded and its variants count as "
                    "unsupported"
                )
                continue
            try:
                found = self.plugins(namespace, provider)
            except PluginFailed as err:
                notes.append(f"{namespace}: {err.message}; its variants count as unsupported")
                continue
            if found is None:
                notes.append(
                    f"{namespace}: trusted, but no installed plugin (entry-point group "
                    f"{PLUGIN_GROUP}) is named for this namespace or its plugin-api, its "
                    "module is not importable here, and there is no index or find-links "
                    "to install its requires from"
                )
            else:
                supported[namespace] = found
        if meta is not None and ABI_NAMESPACE in meta.namespaces_used():
            supported[ABI_NAMESPACE], abi_notes = abi_dependency_support(meta, self.abi)
            notes += abi_notes
        return with_assumed(supported, self.assumed), notes


def abi_dependency_support(
    meta: VariantMetadata, abi: AbiEnvironment | None
) -> tuple[dict[str, list[str]], list[str]]:
    """What the target environment supports of the ``abi_dependency`` features that
    ``meta`` names, and a note per feature saying which version was found where."""
    if abi is None:
        return {}, [f"{ABI_NAMESPACE}: no target environment given; its variants count as "
                    "unsupported"]  # fmt: skip
    named = sorted({p.feature for props in meta.variants.values() for p in props
                    if p.namespace == ABI_NAMESPACE})  # fmt: skip
    notes = [*abi.notes, *(f"{ABI_NAMESPACE}: {abi.describe(f)}" for f in named)]
    return abi.supported(), notes
