"""Cross-index consistency: a release set against another index (``check --against``,
and ``publish`` before it sends anything).

A variant release lives on two indexes: the public one holds the sdist and the plain
wheels, the variant index the whole set. Installers given both meet two hazards this
module looks for, on every ``--against`` index independently:

- ``same-name``: a file name of the set that the index lists with other bytes (sha256 of
  the page, or of the file, streamed and bounded, when the page gives none);
- ``requirement``: a ``Requires-Dist`` name (of any wheel, whatever its marker or
  extra) that the index does not know: installed with that index, the name could only
  come from the variant index, or from whoever registers it there first
  (dependency confusion in reverse);
- ``published-there`` (only when asked): the project, and every plain wheel and sdist of
  the set, must be on the index.

Each project page is read once per run, several at a time (bounded).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from wheelforge.errors import InvalidInput
from wheelforge.publish.check import Finding, Severity
from wheelforge.publish.release import Artifact, Role, sha256_file
from wheelforge.simple_api import (
    BadPage,
    IndexUnavailable,
    ProjectFile,
    fetch_into,
    read_project_page,
    vet_remote_files,
)
from wheelforge.urls import check_url, redact
from wheelforge.wheel.wheelfile import Wheel, parse_core_metadata

CHECK = "against"
DEFAULT_JOBS = 8  # project pages read at once from one index
INSTEAD = "put the credentials where the index client reads them (netrc, keyring)"
Progress = Callable[[int, int], None]  # pages read, pages in all


class AgainstUnavailable(InvalidInput):
    """An ``--against`` index could not be read: nothing can be concluded (exit code 2)."""


def check_against_url(url: str, option: str = "--against") -> str:
    """``url`` when it is an http(s) or file: simple-index root without credentials."""
    return check_url(option, url, instead=INSTEAD, schemes=("http", "https", "file"))


@dataclass
class PageCache:
    """Project pages read in this run: (index, project) -> files, or None if unknown."""

    auth: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        self._pages: dict[tuple[str, str], dict[str, ProjectFile] | None] = {}
        self._lock = threading.Lock()

    def get(self, index: str, project: str) -> dict[str, ProjectFile] | None:
        key = (index, canonicalize_name(project))
        with self._lock:
            if key in self._pages:
                return self._pages[key]
        try:
            files = read_project_page(index, project, auth=self.auth)
        except (IndexUnavailable, InvalidInput) as err:
            raise AgainstUnavailable(f"--against {redact(index)}: {err.message}") from None
        page = {f.filename: f for f in files} if files else None
        with self._lock:
            self._pages[key] = page
        return page

    def read_all(
        self,
        keys: Sequence[tuple[str, str]],
        *,
        jobs: int = DEFAULT_JOBS,
        progress: Progress | None = None,
    ) -> None:
        """Read every (index, project) page, ``jobs`` at a time; the first failure raises."""
        done = 0
        with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(keys) or 1))) as pool:
            for _ in pool.map(lambda key: self.get(*key), keys):
                done += 1
                if progress is not None:
                    progress(done, len(keys))


def requirement_names(artifacts: Iterable[Artifact]) -> dict[str, list[str]]:
    """Canonical ``Requires-Dist`` name -> the wheels that name it (markers and extras
    ignored: a conditional requirement is installed somewhere too)."""
    names: dict[str, list[str]] = {}
    for artifact in artifacts:
        if not artifact.is_wheel:
            continue
        with Wheel(artifact.path) as wheel:
            raw, _ = parse_core_metadata(wheel.core_metadata())
        for line in raw.get("requires_dist", []) or []:
            try:
                name = canonicalize_name(Requirement(line).name)
            except InvalidRequirement:
                continue  # a metadata finding of check already
            if name != artifact.project:  # the project's own extras: its own page
                names.setdefault(name, []).append(artifact.name)
    return names


def check_against(
    artifacts: Sequence[Artifact],
    indexes: Sequence[str],
    *,
    published_there: bool = False,
    same_names: bool = True,
    auth: tuple[str, str] | None = None,
    jobs: int = DEFAULT_JOBS,
    progress: Progress | None = None,
    cache: PageCache | None = None,
) -> list[Finding]:
    """The findings of the release set ``artifacts`` against each index of ``indexes``
    (simple-index root URLs, already checked with :func:`check_against_url`). Without
    ``same_names`` the release's own pages are not read (``publish``'s plan of an upload
    target has compared its files already): only the requirements are checked."""
    cache = cache or PageCache(auth)
    indexes = list(dict.fromkeys(indexes))  # one index given twice: its findings once
    files = [a for a in artifacts if a.role is not Role.VARIANTS_FILE]
    projects = sorted({a.project for a in files}) if same_names or published_there else []
    requirements = requirement_names(files)
    keys = [(i, p) for i in indexes for p in [*projects, *sorted(requirements)]]
    cache.read_all(list(dict.fromkeys(keys)), jobs=jobs, progress=progress)
    findings: list[Finding] = []
    for index in indexes:
        shown = redact(index)
        for project in projects:
            page = cache.get(index, project)
            mine = [a for a in files if a.project == project]
            findings += _same_names(mine, page or {}, index)
            if published_there:
                findings += _published(project, mine, page, shown)
        for name, wheels in sorted(requirements.items()):
            if cache.get(index, name) is None:
                more = f" (and {len(wheels) - 1} more wheels)" if len(wheels) > 1 else ""
                findings.append(
                    Finding(
                        Severity.ERROR,
                        wheels[0],
                        CHECK,
                        f"requires {name}, which {shown} does not know{more}: installed with "
                        "that index and the variant index, the name can come only from the "
                        "variant index or whoever registers it first (dependency confusion)",
                    )
                )
    return findings


def _same_names(mine: list[Artifact], page: dict[str, ProjectFile], index: str) -> list[Finding]:
    findings = []
    for artifact in mine:
        listed = page.get(artifact.name)
        if listed is None:
            continue
        ours = sha256_file(artifact.path)
        theirs = listed.sha256 or _remote_sha256(listed, index, artifact.path.stat().st_size)
        if theirs != ours:
            findings.append(
                Finding(
                    Severity.ERROR,
                    artifact.name,
                    CHECK,
                    f"{redact(index)} has a file of this name with other content (sha256 "
                    f"{theirs} there, {ours} here): installers would get either; published "
                    "files are never replaced, so bump the version or the build number",
                )
            )
    return findings


def _remote_sha256(file: ProjectFile, index: str, size: int) -> str:
    """The sha256 of a file the page lists without one: downloaded (streamed), at most
    one byte more than ours (more can only differ), only from the page's own host."""
    try:
        vet_remote_files([file], index, allow_unhashed=True)
    except InvalidInput as err:
        raise AgainstUnavailable(f"--against {redact(index)}: {err.message}") from None
    digest = hashlib.sha256()
    try:
        fetch_into(file.url, digest.update, size + 1)
    except BadPage:
        return "(larger than this file)"
    except IndexUnavailable as err:
        raise AgainstUnavailable(f"--against {redact(index)}: {err.message}") from None
    return digest.hexdigest()


def _published(
    project: str, mine: list[Artifact], page: dict[str, ProjectFile] | None, shown: str
) -> list[Finding]:
    if page is None:
        return [
            Finding(
                Severity.ERROR,
                project,
                CHECK,
                f"{shown} does not know {project}, yet its plain wheels and sdist are "
                "said to be published there (--published-there)",
            )
        ]
    return [
        Finding(
            Severity.ERROR,
            a.name,
            CHECK,
            f"not on {shown}, yet the plain wheels and sdist are said to be published there "
            "(--published-there)",
        )
        for a in mine
        if (not a.is_wheel or a.is_plain_wheel) and a.name not in page
    ]
