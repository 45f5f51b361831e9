"""Which wheel an installer picks: resolve the version, read the variants file, rank
with the shared layer-1 ranking (``variants.ranking``), as uv does.

Per version, newest first: the wheels whose tags the interpreter accepts; of those,
labelled wheels count only if the release's variants file lists their label (as in uv);
the best compatible candidate with a wheel wins, a plain wheel ranking after ``null``.
A version with no compatible wheel gives way to the next older one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import Tag
from packaging.utils import InvalidSdistFilename, canonicalize_name, parse_sdist_filename
from packaging.version import InvalidVersion, Version

from wheelforge.errors import InvalidInput
from wheelforge.select.machine import Machine, optional_off, without_providers
from wheelforge.simple_api import ProjectFile
from wheelforge.variants import installer_rules
from wheelforge.variants.abi_dependency import NAMESPACE as ABI_NAMESPACE
from wheelforge.variants.metadata import VariantMetadata, loads
from wheelforge.variants.ranking import Ranked, Supported, rank
from wheelforge.wheel.filename import WheelFilename

VARIANTS_SUFFIX = "-variants.json"
SDIST_SUFFIXES = (".tar.gz", ".zip")


@dataclass(frozen=True)
class Candidate:
    """One wheel of the chosen version, and what became of it."""

    filename: str
    label: str | None
    properties: tuple[str, ...]
    status: str  # "chosen", "compatible", or why not
    rank_key: str = ""  # the (namespace, feature, value) indices the ranking compares
    source: str | None = None  # the index (or find-links directory) it came from

    def to_json(self) -> dict[str, Any]:
        return {"filename": self.filename, "label": self.label,
                "properties": list(self.properties), "status": self.status,
                "rank_key": self.rank_key, "index": self.source}  # fmt: skip


@dataclass(frozen=True)
class Selection:
    project: str
    version: str | None
    chosen: ProjectFile | None
    label: str | None
    candidates: tuple[Candidate, ...] = ()
    variants_file: str | None = None
    notes: tuple[str, ...] = field(default=())
    sdist: ProjectFile | None = None  # what an installer would build instead (see select)
    source: str | None = None  # the index (or find-links directory) of the chosen wheel

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "version": self.version,
            "chosen": self.chosen.filename if self.chosen else None,
            "url": self.chosen.url if self.chosen else None,
            "label": self.label,
            "variants_file": self.variants_file,
            "candidates": [c.to_json() for c in self.candidates],
            "notes": list(self.notes),
            "sdist": self.sdist.filename if self.sdist else None,
            "sdist_url": self.sdist.url if self.sdist else None,
            "index": self.source,
        }


def parse_requirement(text: str) -> Requirement:
    try:
        requirement = Requirement(text)
    except InvalidRequirement as err:
        raise InvalidInput(f"{text!r}: not a requirement like NAME or NAME==1.0 ({err})") from None
    if requirement.url or requirement.marker or requirement.extras:
        raise InvalidInput(f"{text!r}: give NAME with an optional version specifier only")
    return requirement


def select(
    requirement: Requirement,
    files: Sequence[ProjectFile],
    machine: Machine,
    *,
    tags: Sequence[Tag],
    python_version: Version,
    read: Callable[[ProjectFile], bytes] = ProjectFile.read,
) -> Selection:
    """The wheel an installer picks; with a note (and ``Selection.sdist``) where it would
    build an sdist instead: no wheel fits, or a newer version has only an sdist (uv 0.13.8
    builds it in both cases; wheelforge selects wheels only)."""
    selection = _select_wheel(
        requirement, files, machine, tags=tags, python_version=python_version, read=read
    )
    return with_sdist(selection, requirement, files, python_version)


def with_sdist(
    selection: Selection,
    requirement: Requirement,
    files: Sequence[ProjectFile],
    python_version: Version,
) -> Selection:
    sdists = _sdists_by_version(files, canonicalize_name(requirement.name), python_version)
    matching = sorted(
        (v for v in sdists if requirement.specifier.contains(v, prereleases=True)), reverse=True
    )
    if not requirement.specifier.prereleases and any(not v.is_prerelease for v in matching):
        matching = [v for v in matching if not v.is_prerelease]
    chosen = Version(selection.version) if selection.chosen and selection.version else None
    newer = [v for v in matching if chosen is None or v > chosen]
    if not newer:
        return selection
    sdist = sdists[newer[0]]
    if chosen is None:
        note = (
            f"no wheel fits, but {sdist.filename} does: an installer would build it from "
            "source (uv 0.13.8 does; wheelforge selects wheels only)"
        )
    else:
        note = (
            f"{sdist.filename} is newer than {selection.version}: an installer would build "
            "it from source rather than install this wheel (uv 0.13.8 does; wheelforge "
            "selects wheels only)"
        )
    return replace(selection, sdist=sdist, notes=(*selection.notes, note))


def _sdists_by_version(
    files: Sequence[ProjectFile], project: str, python_version: Version
) -> dict[Version, ProjectFile]:
    found: dict[Version, ProjectFile] = {}
    for file in files:
        if not file.filename.endswith(SDIST_SUFFIXES) or not _fits(file, python_version):
            continue
        try:
            name, version = parse_sdist_filename(file.filename)
        except (InvalidSdistFilename, InvalidVersion):
            continue
        if name == project:
            found.setdefault(version, file)
    return found


def _select_wheel(
    requirement: Requirement,
    files: Sequence[ProjectFile],
    machine: Machine,
    *,
    tags: Sequence[Tag],
    python_version: Version,
    read: Callable[[ProjectFile], bytes] = ProjectFile.read,
) -> Selection:
    project = canonicalize_name(requirement.name)
    releases = _wheels_by_version(files, project)
    variants_files = _variants_files(files, project)
    tag_rank = {tag: i for i, tag in enumerate(tags)}
    versions = sorted(
        (v for v in releases if requirement.specifier.contains(v, prereleases=True)), reverse=True
    )
    if not requirement.specifier.prereleases and any(not v.is_prerelease for v in versions):
        versions = [v for v in versions if not v.is_prerelease]
    if not versions:
        return Selection(project, None, None, None, notes=(_nothing_found(requirement, releases),))
    tried: list[str] = []
    for version in versions:
        wheels = [
            (wheel, name) for wheel, name in releases[version]
            if _fits(wheel, python_version) and _best_tag(name, tag_rank) is not None
        ]  # fmt: skip
        meta_file = variants_files.get(version)
        meta, uv_notes = _read_variants(meta_file, read) if meta_file else (None, [])
        supported, notes = machine.for_release(meta)
        notes += uv_notes
        off = optional_off(meta, machine.enabled_optional)
        notes += _schema_notes(meta, meta_file)
        selection = _select_version(
            project, version, wheels, meta, meta_file, supported, tag_rank, notes, off
        )
        if selection.chosen is not None:
            return selection
        tried.append(str(version))
        if version == versions[-1]:
            return Selection(
                project, str(versions[0]), None, None, selection.candidates,
                selection.variants_file,
                (
                    *selection.notes,
                    f"no wheel of {project} {', '.join(tried)} fits this machine and interpreter",
                ),
            )  # fmt: skip
    raise AssertionError("unreachable")


def _select_version(
    project: str,
    version: Version,
    wheels: list[tuple[ProjectFile, WheelFilename]],
    meta: VariantMetadata | None,
    meta_file: ProjectFile | None,
    machine: Supported,
    tag_rank: Mapping[Tag, int],
    notes: list[str],
    off: Sequence[str] = (),
) -> Selection:
    by_label: dict[str | None, list[tuple[ProjectFile, WheelFilename]]] = defaultdict(list)
    for wheel, name in wheels:
        by_label[name.label].append((wheel, name))
    ranked = rank(
        without_providers(meta or VariantMetadata(()), off), machine, plain=None in by_label
    )
    candidates: list[Candidate] = []
    chosen: tuple[ProjectFile, str | None] | None = None
    for entry in ranked:
        properties = _properties(meta, entry.label)
        for wheel, _ in sorted(by_label.get(entry.label, []),
                               key=lambda w: _best_tag(w[1], tag_rank) or 0):  # fmt: skip
            if not entry.compatible:
                status = "incompatible: " + _why(entry, meta, machine, off)
            elif chosen is None:
                chosen = (wheel, entry.label)
                status = "chosen"
            else:
                status = "compatible"
            candidates.append(Candidate(wheel.filename, entry.label, properties, status,
                                        _key(entry)))  # fmt: skip
    listed = set(meta.variants) if meta is not None else set()
    for label, label_wheels in by_label.items():
        if label is not None and label not in listed:
            why = "not in the variants file" if meta is not None else "no variants file listed"
            for wheel, _ in label_wheels:
                candidates.append(Candidate(wheel.filename, label, (), f"ignored: {why}"))
    return Selection(
        project,
        str(version),
        chosen[0] if chosen else None,
        chosen[1] if chosen else None,
        tuple(candidates),
        meta_file.filename if meta_file else None,
        tuple(notes),
    )


def _schema_notes(meta: VariantMetadata | None, file: ProjectFile | None) -> list[str]:
    if meta is None or file is None or meta.unknown_schema is None:
        return []
    return [
        f"{file.filename}: unknown $schema {meta.unknown_schema!r}; read by its shape "
        f"({meta.schema.short_name}), as uv 0.13.8 does"
    ]


def _wheels_by_version(
    files: Sequence[ProjectFile], project: str
) -> dict[Version, list[tuple[ProjectFile, WheelFilename]]]:
    releases: dict[Version, list[tuple[ProjectFile, WheelFilename]]] = defaultdict(list)
    for file in files:
        if not file.filename.endswith(".whl"):
            continue
        try:
            name = WheelFilename.parse(file.filename)
            release_name, version = name.release
        except InvalidInput:
            continue  # installers skip names they cannot parse
        if canonicalize_name(release_name) == project:
            releases[Version(version)].append((file, name))
    return releases


def _variants_files(files: Sequence[ProjectFile], project: str) -> dict[Version, ProjectFile]:
    found = {}
    for file in files:
        if not file.filename.endswith(VARIANTS_SUFFIX):
            continue
        name, _, version = file.filename[: -len(VARIANTS_SUFFIX)].rpartition("-")
        if "-" in name or canonicalize_name(name) != project:
            continue  # only the wheel-style name (underscores) counts, as in uv
        try:
            found[Version(version)] = file
        except InvalidVersion:
            continue
    return found


def _read_variants(
    file: ProjectFile, read: Callable[[ProjectFile], bytes]
) -> tuple[VariantMetadata, list[str]]:
    """The variants file, and a note per thing in it that makes uv 0.13.8 refuse the
    whole release (wheelforge reads it, as variantlib does, but uv installs nothing)."""
    data = read(file)
    meta = loads(data, source=file.url)
    scope = f"this release ({file.filename}; uv installs nothing from it)"
    return meta, [r.line(scope) for r in installer_rules.file_rejections(data, source=file.url)]


def _fits(file: ProjectFile, python_version: Version) -> bool:
    if not file.requires_python:
        return True
    try:
        return SpecifierSet(file.requires_python).contains(python_version, prereleases=True)
    except ValueError:
        return True


def _best_tag(name: WheelFilename, tag_rank: Mapping[Tag, int]) -> int | None:
    ranks = [tag_rank[tag] for tag in name.tags if tag in tag_rank]
    return min(ranks) if ranks else None


def _properties(meta: VariantMetadata | None, label: str | None) -> tuple[str, ...]:
    if meta is None or label is None or label not in meta.variants:
        return ()
    return tuple(sorted(str(p) for p in meta.variants[label]))


def _why(
    entry: Ranked, meta: VariantMetadata | None, machine: Supported, off: Sequence[str] = ()
) -> str:
    reasons = []
    for namespace, feature in entry.unsupported:
        wanted = sorted(
            p.value for p in (meta.variants.get(entry.label or "", ()) if meta else ())
            if (p.namespace, p.feature) == (namespace, feature)
        )  # fmt: skip
        have = machine.get(namespace, {}).get(feature, ())
        machine_says = f"machine: {have[0]}{' …' if len(have) > 1 else ''}" if have else "none"
        if namespace in off:
            machine_says = f"optional provider, off: --enable-optional {namespace}"
        elif namespace == ABI_NAMESPACE:  # values 2, 2.9, 2.9.1: show the installed version
            machine_says = f"installed: {have[-1]}" if have else "not installed"
        reasons.append(f"{namespace} :: {feature} :: {'|'.join(wanted)} ({machine_says})")
    return "; ".join(reasons)


def _key(entry: Ranked) -> str:
    if entry.label is None:
        return "plain (after every variant)"
    if not entry.keys:
        return "null (after every variant)" if entry.compatible else ""
    return " ".join(f"({n},{f},{v})" for n, f, v in entry.keys)


def _nothing_found(requirement: Requirement, releases: Mapping[Version, Any]) -> str:
    if not releases:
        return f"no wheels of {requirement.name} found"
    return (
        f"no version of {requirement.name} matches {requirement.specifier} "
        f"(found {', '.join(str(v) for v in sorted(releases))})"
    )
