"""Coverage: which wheel each of a set of hardware profiles gets from a release, and
which profiles fall back to ``null``, to the plain wheel, or get nothing. The table a
release engineer reviews before publishing.

With ``needs`` (the ISA audit, :mod:`wheelforge.isa`), a CPU profile whose wheel's
machine code needs a newer x86-64 level than the profile's CPU has ``fails``: the wheel
installs there and dies with SIGILL."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from packaging.requirements import Requirement
from packaging.tags import Tag

from wheelforge.isa import level_name
from wheelforge.select.install import Interpreter
from wheelforge.select.machine import Machine
from wheelforge.select.profiles import Profile
from wheelforge.select.selection import select
from wheelforge.simple_api import ProjectFile
from wheelforge.variants.abi_dependency import ENV_VARIABLE
from wheelforge.variants.abi_dependency import Environment as AbiEnvironment
from wheelforge.variants.labels import NULL_LABEL


@dataclass(frozen=True)
class CoverageRow:
    profile: str
    description: str
    version: str | None
    wheel: str | None
    label: str | None
    outcome: str  # "variant", "null", "plain", "nothing" or "fails" (needs a newer CPU)
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "notes": list(self.notes)}


def coverage(
    requirement: Requirement,
    files: Sequence[ProjectFile],
    profiles: Sequence[Profile],
    target: Interpreter,
    *,
    trusted: frozenset[str] = frozenset(),
    enabled_optional: frozenset[str] = frozenset(),
    read: Callable[[ProjectFile], bytes] = ProjectFile.read,
    needs: Callable[[ProjectFile], tuple[int, str]] | None = None,
    abi: AbiEnvironment | None = None,
) -> list[CoverageRow]:
    """``needs``: the x86-64 level a wheel's code needs to run, and why (e.g. "AVX-512F
    in fill_table (load-time)"); asked only for profiles with an x86-64 level.
    ``abi``: the target environment's packages for ``abi_dependency``, used for the
    profiles without an ``[installed]`` table."""
    rows = []
    env_value = os.environ.get(ENV_VARIABLE)
    for profile in profiles:
        simulated = profile.abi_environment(env_value)
        machine = Machine(profile.supported(), trusted=trusted, enabled_optional=enabled_optional,
                          abi=simulated if simulated is not None else abi)  # fmt: skip
        selection = select(
            requirement, files, machine, tags=tags_for(profile, target.tags),
            python_version=target.version, read=read,
        )  # fmt: skip
        if selection.chosen is None:
            outcome = "nothing"
        elif selection.label is None:
            outcome = "plain"
        elif selection.label == NULL_LABEL:
            outcome = "null"
        else:
            outcome = "variant"
        notes = selection.notes
        if needs is not None and selection.chosen is not None and profile.x86_64_level:
            failure = _isa_failure(needs, selection.chosen, profile.x86_64_level)
            if failure is not None:
                outcome, notes = "fails", (*notes, failure)
        rows.append(
            CoverageRow(
                profile.name,
                profile.description,
                selection.version,
                selection.chosen.filename if selection.chosen else None,
                selection.label,
                outcome,
                notes,
            )
        )
    return rows


def _isa_failure(
    needs: Callable[[ProjectFile], tuple[int, str]], chosen: ProjectFile, cpu: int
) -> str | None:
    level, why = needs(chosen)
    if level <= cpu:
        return None
    return (
        f"{chosen.filename} needs {level_name(level)} ({why}) but this CPU is "
        f"{level_name(cpu)}: it installs and dies with SIGILL"
    )


def tags_for(profile: Profile, tags: Sequence[Tag]) -> list[Tag]:
    """The interpreter's tags, moved to the profile's CPU architecture when it differs
    from this machine's (an aarch64 profile looks for aarch64 wheels)."""
    here = platform.machine()
    there = "aarch64" if profile.aarch64_version else "x86_64" if profile.x86_64_level else here
    if there == here:
        return list(tags)
    return [Tag(t.interpreter, t.abi, t.platform.replace(here, there)) for t in tags]
