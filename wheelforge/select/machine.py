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
unless asked; while off, its variants count as unsupported.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib.metadata import entry_points

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from wheelforge.errors import WheelforgeError
from wheelforge.select.profiles import with_assumed
from wheelforge.variants.abi_dependency import NAMESPACE as ABI_NAMESPACE
from wheelforge.variants.abi_dependency import Environment as AbiEnvironment
from wheelforge.variants.lint import plugin_api_ok
from wheelforge.variants.metadata import VariantMetadata
from wheelforge.variants.properties import VariantProperty
from wheelforge.variants.providers import PRESETS, Provider
from wheelforge.variants.ranking import Supported

PLUGIN_GROUP = "variant_plugins"
TRUST_VARIABLE = "WHEELFORGE_TRUST_PROVIDERS"
OPTIONAL_VARIABLE = "WHEELFORGE_ENABLE_OPTIONAL"

PluginLoader = Callable[[str, str | None], dict[str, list[str]] | None]
"""``(namespace, the provider's plugin-api or None) -> {feature: [values]}`` or None."""


def _object_path(value: str) -> str:
    """An entry point's or a ``plugin-api``'s ``module:attr`` without spaces, so that
    ``pkg.mod : Obj`` and ``pkg.mod:Obj`` compare equal."""
    return "".join(value.split())


def installed_plugin(namespace: str, plugin_api: str | None = None) -> dict[str, list[str]] | None:
    """Run the installed plugin for ``namespace`` (entry-point group ``variant_plugins``):
    its ``get_supported_configs()`` as ``{feature: [values, best first]}``.

    Only an entry point named ``namespace``, or whose object is the provider's declared
    ``plugin-api``, is imported: a plugin for any other namespace is never loaded, since
    loading it runs its code."""
    wanted = _object_path(plugin_api) if plugin_api else None
    for entry in entry_points(group=PLUGIN_GROUP):
        if entry.name != namespace and (wanted is None or _object_path(entry.value) != wanted):
            continue
        try:
            plugin = entry.load()
            if inspect.isclass(plugin):
                plugin = plugin()
        except Exception as err:  # a broken plugin is the user's to know about
            raise WheelforgeError(f"variant plugin {entry.value}: failed to load ({err})") from err
        if getattr(plugin, "namespace", None) != namespace:
            continue
        try:
            configs = plugin.get_supported_configs()
        except TypeError:  # older plugin API: known properties as an argument
            configs = plugin.get_supported_configs(None)
        return {str(c.name): [str(v) for v in c.values] for c in configs}
    return None


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
    plugins: PluginLoader = field(default=installed_plugin, compare=False)
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
            found = self.plugins(namespace, provider.plugin_api)
            if found is None:
                notes.append(
                    f"{namespace}: trusted, but no installed plugin (entry-point group "
                    f"{PLUGIN_GROUP}) is named for this namespace or its plugin-api"
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
