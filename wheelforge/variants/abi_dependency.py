"""The reserved ``abi_dependency`` namespace (pure functions).

``abi_dependency :: torch :: 2.9`` says "built against torch 2.9": the variant fits an
environment where ``torch==2.9.*`` is installed. No plugin provides it; the installer
derives it from the distributions installed in the target environment, and from
``VARIANT_ABI_DEPENDENCY=pkg==1.2.3,...``, exactly as variantlib 0.2.x does
(``variantlib.resolver.lib.inject_abi_dependency``):

- feature: the distribution name, normalised (``canonicalize_name``, then ``-`` to ``_``:
  ``Foo.Bar`` is ``foo_bar``);
- values: of an installed version ``2.9.1+cu128``, the prefixes ``2``, ``2.9`` and
  ``2.9.1`` (major, major.minor, major.minor.micro; missing parts are 0, so ``3`` gives
  ``3``, ``3.0``, ``3.0.0``); best first in that order, so a variant asking only for
  ``torch :: 2`` ranks above one asking for ``torch :: 2.9`` (variantlib's order);
- features ordered by name; the namespace ranks after every other namespace unless the
  release lists it in ``default-priorities.namespace``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

NAMESPACE = "abi_dependency"
ENV_VARIABLE = "VARIANT_ABI_DEPENDENCY"
BUILTIN = "abi_dependency"
"""The ``builtin`` value ``tag`` writes for the namespace's provider entry (uv 0.13.8
needs an entry for every listed namespace)."""


def normalize_name(name: str) -> str:
    """A distribution name as an ``abi_dependency`` feature: ``Foo-Bar`` -> ``foo_bar``."""
    return canonicalize_name(name).replace("-", "_")


def version_matches(version: str) -> tuple[str, ...]:
    """The values an installed ``version`` supports, best first; none for a version
    that is not PEP 440 (variantlib raises there; wheelforge ignores the package)."""
    try:
        parsed = Version(version)
    except InvalidVersion:
        return ()
    return (
        f"{parsed.major}",
        f"{parsed.major}.{parsed.minor}",
        f"{parsed.major}.{parsed.minor}.{parsed.micro}",
    )


@dataclass(frozen=True)
class Environment:
    """The packages ``abi_dependency`` is judged against: normalised name -> version,
    and where each came from."""

    packages: Mapping[str, str]
    sources: Mapping[str, str]
    notes: tuple[str, ...] = ()

    def supported(self) -> dict[str, list[str]]:
        """``{feature: [values, best first]}``, features by name."""
        features: dict[str, list[str]] = {}
        for name in sorted(self.packages):
            values = version_matches(self.packages[name])
            if values:
                features[name] = list(values)
        return features

    def describe(self, feature: str) -> str:
        """For ``--explain``: ``torch 2.9.1 (installed in /venv/bin/python)``."""
        if feature not in self.packages:
            return f"{feature} not installed"
        return f"{feature} {self.packages[feature]} ({self.sources[feature]})"


def parse_env_value(value: str) -> tuple[dict[str, str], tuple[str, ...]]:
    """``pkg==1.2.3,other==4.5`` -> ``{normalised name: version}``, and a note for each
    entry that is not ``NAME==VERSION`` (ignored, as variantlib does)."""
    packages: dict[str, str] = {}
    notes: list[str] = []
    for entry in value.split(","):
        name, sep, version = entry.partition("==")
        if not sep or not name.strip() or not version.strip():
            notes.append(
                f"{ENV_VARIABLE}: ignored {entry!r} (expected NAME==VERSION,NAME==VERSION)"
            )
            continue
        packages[normalize_name(name.strip())] = version.strip()
    return packages, tuple(notes)


def environment(
    installed: Mapping[str, str],
    *,
    where: str,
    env_value: str | None = None,
) -> Environment:
    """The installed distributions (``{name: version}``, any spelling) overridden by
    ``VARIANT_ABI_DEPENDENCY``'s value, as in variantlib."""
    packages = {normalize_name(name): version for name, version in installed.items()}
    sources = dict.fromkeys(packages, where)
    notes: tuple[str, ...] = ()
    if env_value:
        overrides, notes = parse_env_value(env_value)
        for name, version in overrides.items():
            if name in packages and packages[name] != version:
                notes += (
                    f"{ENV_VARIABLE}: {name} {version} instead of installed {packages[name]}",
                )
            packages[name] = version
            sources[name] = ENV_VARIABLE
    return Environment(packages, sources, notes)


def namespace_order(priorities: Sequence[str]) -> tuple[str, ...]:
    """A release's namespace priorities with ``abi_dependency`` last unless listed."""
    order = tuple(priorities)
    return order if NAMESPACE in order else (*order, NAMESPACE)
