"""Several indexes: which files an installer considers when a project may be on more
than one, as uv 0.13.8's ``--index-strategy`` decides, with PEP 708 on top.

Sources come in order: index groups (one ``--index URL`` is a group of one; an
``--index-group URL,URL`` is merged as one index, PEP 766's generalisation, the user
having declared its indexes one namespace), and the find-links directories, always read
and merged in under every strategy, ahead of the indexes for a version both have (what
uv 0.13.8 does with its flat indexes: observed, tests/test_select_indexes.py).

- ``first-index`` (uv's default): the first group whose page lists the project supplies
  every file of it; later groups are not read.
- ``unsafe-first-match``: the groups that list the project, in order; the first one with a
  version that fits wins (the selector tries them one after another).
- ``unsafe-best-match``: every group's versions together, the best one wins; a version on
  several groups comes from the first that has it (uv's rule).

Within a pool a version's files (wheels, sdist, variants file) come from one source only,
the first that lists that version, so a variants file applies only to its own index's
wheels (SPEC: each source's variant metadata is used in isolation).

PEP 708: under the two merging strategies, when two groups both list the project, they
are merged only if one's page ``tracks`` the other's project page, or each lists the
other in ``alternate-locations``; otherwise :class:`UnrelatedIndexes` (PEP 708's MUST:
an installer halts rather than mix an unrelated index's project in).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from packaging.requirements import Requirement
from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    canonicalize_name,
    parse_sdist_filename,
)
from packaging.version import InvalidVersion, Version

from wheelforge.errors import InvalidInput
from wheelforge.select.machine import Machine
from wheelforge.select.selection import Selection, select
from wheelforge.simple_api import ProjectFile, ProjectPage
from wheelforge.wheel.filename import WheelFilename

STRATEGIES = ("first-index", "unsafe-first-match", "unsafe-best-match")
VARIANTS_SUFFIX = "-variants.json"


class UnrelatedIndexes(InvalidInput):
    """Two indexes list the project and neither PEP 708 relation holds between them."""


@dataclass(frozen=True)
class Source:
    """One index (its URL) or find-links directory (its path), and its project page."""

    name: str
    page: ProjectPage


@dataclass(frozen=True)
class Pool:
    """The files one selection considers, each file's source, and what was skipped why."""

    files: tuple[ProjectFile, ...]  # each version from the first source that lists it
    origin: tuple[tuple[str, str], ...]  # (file url, source name)
    notes: tuple[str, ...]
    layers: tuple[tuple[str, tuple[ProjectFile, ...]], ...] = ()  # each source's own files

    def source_of(self, filename: str) -> str | None:
        urls = {f.url for f in self.files if f.filename == filename}
        return next((name for url, name in self.origin if url in urls), None)


Reader = Callable[[str], ProjectPage]  # an index URL -> its page for the project


def pools(
    project: str,
    groups: Sequence[Sequence[str]],
    read: Reader,
    *,
    strategy: str = "first-index",
    find_links: Sequence[Source] = (),
) -> list[Pool]:
    """The pools to select from, in order (only ``unsafe-first-match`` gives several:
    the selector takes the first pool in which a wheel fits)."""
    if strategy not in STRATEGIES:
        raise InvalidInput(f"--index-strategy {strategy}: expected one of {', '.join(STRATEGIES)}")
    notes: list[str] = []
    having: list[list[Source]] = []
    for group in groups:
        if strategy == "first-index" and having:
            skipped = ", ".join(group)
            notes.append(
                f"{skipped}: not consulted (first-index: {_names(having[0])} has {project}, "
                "so every file of it comes from there)"
            )
            continue
        sources = [Source(url, read(url)) for url in group]
        listed = [s for s in sources if _lists(s.page, project)]
        for source in sources:
            if source not in listed:
                notes.append(f"{source.name}: does not list {project}")
        if listed:
            having.append(listed)
    if strategy != "first-index":
        _check_pep708(project, having)
    links = [s for s in find_links if _lists(s.page, project)]
    if strategy == "unsafe-first-match" and len(having) > 1:
        found = []
        seen: set[Version] = set()
        for i, members in enumerate(having):
            note = (f"unsafe-first-match: {_names(members)} tried {'first' if i == 0 else 'next'}"
                    f" (index {i + 1} of {len(having)} with {project}; a version an earlier "
                    "one lists is not taken from it, as in uv 0.13.8)")  # fmt: skip
            found.append(_pool(project, [*links, *members], [*notes, note], frozenset(seen)))
            seen |= {v for s in members for f in s.page.files
                     if (v := file_version(f.filename, project)) is not None}  # fmt: skip
        return found
    merged = [s for members in having for s in members]
    if strategy == "unsafe-best-match" and len(having) > 1:
        notes.append(
            f"unsafe-best-match: {project} on {len(having)} indexes, merged (PEP 708 relation "
            "holds); a version on several is taken from the first of them whose own files of "
            "it have a wheel that fits"
        )
    return [_pool(project, [*links, *merged], notes)]


def _pool(
    project: str,
    sources: Sequence[Source],
    notes: list[str],
    excluded: frozenset[Version] = frozenset(),
) -> Pool:
    taken: dict[Version, str] = {}
    files: list[ProjectFile] = []
    origin: list[tuple[str, str]] = []
    shadowed: dict[str, set[str]] = {}
    layers = []
    for source in sources:
        own = []
        for file in source.page.files:
            version = file_version(file.filename, project)
            if version is None or version in excluded:
                continue
            own.append(file)
            owner = taken.setdefault(version, source.name)
            if owner != source.name:
                shadowed.setdefault(source.name, set()).add(f"{version} (from {owner})")
                continue
            files.append(file)
            origin.append((file.url, source.name))
        layers.append((source.name, tuple(own)))
    for name, versions in shadowed.items():
        notes = [*notes, f"{name}: {', '.join(sorted(versions))} used only if the earlier "
                 "source's files of that version do not fit (each version's files, variants "
                 "file included, from one source)"]  # fmt: skip
    return Pool(tuple(files), tuple(origin), tuple(notes), tuple(layers))


def file_version(filename: str, project: str) -> Version | None:
    """The version of a wheel, sdist or variants file of ``project``; None otherwise."""
    project = canonicalize_name(project)
    try:
        if filename.endswith(".whl"):
            name, version = WheelFilename.parse(filename).release
            return Version(version) if canonicalize_name(name) == project else None
        if filename.endswith(VARIANTS_SUFFIX):
            name, _, text = filename[: -len(VARIANTS_SUFFIX)].rpartition("-")
            return Version(text) if canonicalize_name(name) == project else None
        sdist_name, sdist_version = parse_sdist_filename(filename)
    except (InvalidInput, InvalidVersion, InvalidSdistFilename):
        return None
    return sdist_version if sdist_name == project else None


def _lists(page: ProjectPage, project: str) -> bool:
    return any(file_version(f.filename, project) is not None for f in page.files)


def _names(sources: Sequence[Source]) -> str:
    return " + ".join(s.name for s in sources)


def related(a: ProjectPage, b: ProjectPage) -> bool:
    """PEP 708: one page tracks the other, or each names the other as an alternate location."""
    a_url, b_url = _norm(a.url), _norm(b.url)
    if b_url in {_norm(u) for u in a.tracks} or a_url in {_norm(u) for u in b.tracks}:
        return True
    return b_url in {_norm(u) for u in a.alternate_locations} and a_url in {
        _norm(u) for u in b.alternate_locations
    }


def _check_pep708(project: str, having: Sequence[Sequence[Source]]) -> None:
    for i, first in enumerate(having):
        for second in having[i + 1 :]:
            if not any(related(a.page, b.page) for a in first for b in second):
                raise UnrelatedIndexes(
                    f"{project} is on {_names(first)} and on {_names(second)}, and neither "
                    "page tracks the other nor do both name each other in alternate-locations "
                    "(PEP 708): refusing to merge them",
                    hint="use --index-strategy first-index, or --index-group A,B to declare "
                    "the two indexes one namespace",
                )


def _norm(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urllib.parse.urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, "", ""))


def select_from(
    requirement: Requirement,
    candidates: Sequence[Pool],
    machine: Machine,
    *,
    tags: Sequence[Tag],
    python_version: Version,
    read: Callable[[ProjectFile], bytes] = ProjectFile.read,
) -> Selection:
    """:func:`select` on each pool in turn until a wheel fits; every candidate names its
    source, and the notes say which indexes were consulted and why the others were not."""
    selection: Selection | None = None
    for pool in candidates:
        walked = _walk(requirement, pool, machine, tags, python_version, read)
        if walked is None:  # nothing fits: what the first source per version offers, and why
            found = select(requirement, pool.files, machine, tags=tags,
                           python_version=python_version, read=read)  # fmt: skip
            sources = [pool.source_of(c.filename) for c in found.candidates]
        else:
            found, name = walked
            sources = [name] * len(found.candidates)
        selection = replace(
            found,
            candidates=tuple(
                replace(c, source=n) for c, n in zip(found.candidates, sources, strict=True)
            ),
            notes=(*pool.notes, *found.notes),
            source=walked[1] if walked else None,
        )
        if selection.chosen is not None:
            return selection
    if selection is None:
        raise InvalidInput(f"{requirement.name}: no index or find-links directory given")
    return selection


def _walk(
    requirement: Requirement,
    pool: Pool,
    machine: Machine,
    tags: Sequence[Tag],
    python_version: Version,
    read: Callable[[ProjectFile], bytes],
) -> tuple[Selection, str] | None:
    """Versions newest first; for each, the sources that list it in order, each judged
    on its own files (its own variants file): the first whose wheel fits. What uv 0.13.8
    does when a version's first index has no wheel that fits (observed: it takes the same
    version from the next index)."""
    project = canonicalize_name(requirement.name)
    layers = [layer for layer in pool.layers if layer[1]]
    if len(layers) < 2:
        found = select(requirement, layers[0][1] if layers else (), machine, tags=tags,
                       python_version=python_version, read=read)  # fmt: skip
        return (found, layers[0][0]) if found.chosen is not None else None
    by_version: dict[Version, list[tuple[str, list[ProjectFile]]]] = {}
    for name, files in layers:
        mine: dict[Version, list[ProjectFile]] = {}
        for file in files:
            version = file_version(file.filename, project)
            if version is not None and file.filename.endswith(".whl"):
                mine.setdefault(version, [])
        for file in files:
            version = file_version(file.filename, project)
            if version in mine:
                mine[version].append(file)
        for version, own in mine.items():
            by_version.setdefault(version, []).append((name, own))
    versions = sorted(
        (v for v in by_version if requirement.specifier.contains(v, prereleases=True)),
        reverse=True,
    )
    if not requirement.specifier.prereleases and any(not v.is_prerelease for v in versions):
        versions = [v for v in versions if not v.is_prerelease]
    for version in versions:
        passed: list[str] = []
        for name, own in by_version[version]:
            found = select(requirement, own, machine, tags=tags,
                           python_version=python_version, read=read)  # fmt: skip
            if found.chosen is not None:
                if passed:
                    found = replace(found, notes=(
                        *found.notes,
                        f"{', '.join(passed)}: {version} listed, no wheel fits; {name}'s "
                        f"{version} taken (uv 0.13.8 does the same)"))  # fmt: skip
                return found, name
            passed.append(name)
    return None
