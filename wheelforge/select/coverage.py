"""Coverage: which wheel each of a set of hardware profiles gets from a release, and
which profiles fall back to ``null``, to the plain wheel, or get nothing. The table a
release engineer reviews before publishing."""

from __future__ import annotations

import platform
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from packaging.requirements import Requirement
from packaging.tags import Tag

from wheelforge.select.install import Interpreter
from wheelforge.select.machine import Machine
from wheelforge.select.profiles import Profile
from wheelforge.select.selection import select
from wheelforge.simple_api import ProjectFile
from wheelforge.variants.labels import NULL_LABEL


@dataclass(frozen=True)
class CoverageRow:
    profile: str
    description: str
    version: str | None
    wheel: str | None
    label: str | None
    outcome: str  # "variant", "null", "plain" or "nothing"
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
    read: Callable[[ProjectFile], bytes] = ProjectFile.read,
) -> list[CoverageRow]:
    rows = []
    for profile in profiles:
        machine = Machine(profile.supported(), trusted=trusted)
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
        rows.append(
            CoverageRow(
                profile.name,
                profile.description,
                selection.version,
                selection.chosen.filename if selection.chosen else None,
                selection.label,
                outcome,
                selection.notes,
            )
        )
    return rows


def tags_for(profile: Profile, tags: Sequence[Tag]) -> list[Tag]:
    """The interpreter's tags, moved to the profile's CPU architecture when it differs
    from this machine's (an aarch64 profile looks for aarch64 wheels)."""
    here = platform.machine()
    there = "aarch64" if profile.aarch64_version else "x86_64" if profile.x86_64_level else here
    if there == here:
        return list(tags)
    return [Tag(t.interpreter, t.abi, t.platform.replace(here, there)) for t in tags]
