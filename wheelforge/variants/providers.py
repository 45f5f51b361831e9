"""Provider entries (how an installer learns what a namespace supports) and presets.

The presets are written exactly as uv recognises its builtin providers (SPEC.md):
an entry that differs in any way is a third-party plugin to uv and never selected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from wheelforge.errors import InvalidInput

StaticProperties = tuple[tuple[str, tuple[str, ...]], ...]
"""``((feature, (value, ...)), ...)``: features and values in priority order."""


@dataclass(frozen=True)
class Provider:
    requires: tuple[str, ...] = ()
    plugin_api: str | None = None
    optional: bool = False
    static_properties: StaticProperties = ()
    builtin: str | None = None
    enable_if: str | None = None  # legacy v0.0.3 only

    def __post_init__(self) -> None:
        kinds = [bool(self.requires), bool(self.static_properties), self.builtin is not None]
        if kinds.count(True) != 1:
            raise InvalidInput(
                "provider: expected exactly one of 'requires', 'static-properties' or 'builtin'"
            )
        if self.plugin_api is not None and not self.requires:
            raise InvalidInput("provider: 'plugin-api' is only valid with 'requires'")

    @property
    def is_static(self) -> bool:
        return bool(self.static_properties)


PRESETS: Mapping[str, Provider] = {
    "nvidia": Provider(
        requires=("nvidia-variant-provider",),
        plugin_api="nvidia_variant_provider.plugin:NvidiaVariantPlugin",
    ),
    "x86_64": Provider(requires=("x86-64-variant-provider",)),
    "aarch64": Provider(requires=("aarch64-variant-provider",)),
    "amd": Provider(
        requires=("amd-variant-provider",),
        plugin_api="amd_variant_provider.plugin:AMDVariantPlugin",
    ),
    "tpu": Provider(
        requires=("tpu-variant-provider",),
        plugin_api="tpu_variant_provider.plugin:TpuVariantPlugin",
    ),
}

# Namespaces in the order a maintainer usually wants them tried: accelerators first.
PRESET_PRIORITY: tuple[str, ...] = ("nvidia", "amd", "x86_64", "aarch64")


def preset(namespace: str) -> Provider:
    try:
        return PRESETS[namespace]
    except KeyError:
        raise InvalidInput(
            f"namespace {namespace!r} has no built-in provider preset "
            f"(presets: {', '.join(PRESETS)}); declare it in a [variant.providers] table"
        ) from None
