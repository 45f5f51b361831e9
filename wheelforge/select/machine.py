"""What a machine supports for one release: its detected (or profiled, or assumed)
properties for the namespaces whose provider is one wheelforge knows, and third-party
plugins only where the user trusts them.

As in uv, a namespace's detection applies only when the release declares that
namespace's provider exactly as the standard presets do; any other provider is a
third-party plugin, which means running a package's code at install time, so it runs
only for ``--trust-provider NS`` (or ``WHEELFORGE_TRUST_PROVIDERS=ns,ns``); otherwise
that namespace's variants count as unsupported, as the providers spec requires. A trusted
plugin runs out of process (:mod:`wheelforge.select.plugins`), never imported here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from wheelforge.select.plugins import PLUGIN_GROUP, PluginFailed, TrustedPlugins
from wheelforge.select.profiles import with_assumed
from wheelforge.variants.metadata import VariantMetadata
from wheelforge.variants.properties import VariantProperty
from wheelforge.variants.providers import PRESETS, Provider
from wheelforge.variants.ranking import Supported

TRUST_VARIABLE = "WHEELFORGE_TRUST_PROVIDERS"

PluginLoader = Callable[[str, Provider], dict[str, list[str]] | None]
"""``(namespace, its provider) -> {feature: [values]}``, or None where no plugin is found."""


def trusted_from_env(env: Mapping[str, str] | None = None) -> frozenset[str]:
    value = (env if env is not None else os.environ).get(TRUST_VARIABLE, "")
    return frozenset(ns.strip() for ns in value.split(",") if ns.strip())


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

    def for_release(self, meta: VariantMetadata | None) -> tuple[Supported, list[str]]:
        """What this machine supports for ``meta``'s providers, and notes on the
        namespaces it cannot judge."""
        supported: dict[str, Mapping[str, Sequence[str]]] = {}
        notes = []
        for namespace, provider in meta.providers.items() if meta else ():
            if provider.is_static:
                continue  # the ranking adds static properties itself
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
        return with_assumed(supported, self.assumed), notes
