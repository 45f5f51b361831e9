"""The index stage: a static PEP 503 / 691 / 658 / 714 index that serves variants files.

Layout of a site::

    simple/index.html, simple/index.json               the project list
    simple/{project}/index.html, .../index.json        one page per project (HTML, JSON)
    files/{project}/{sha256[:16]}/{filename}           the files, content-addressed
    files/{project}/{sha256[:16]}/{filename}.metadata  PEP 658 core metadata of wheels

Files are only ever added, under a path that names their content, so a page never
points at a file that changed under it. Pages are written into a copy of ``simple/``
(unchanged pages hard-linked, so they stay untouched) which is then swapped in with
one atomic ``renameat2(RENAME_EXCHANGE)``: a reader sees the old site or the new one.
A project's ``index.json`` is also the site's record of what it holds, and of the PEP 708
links its pages carry (``meta.tracks``, ``alternate-locations``): a later batch of the
project keeps them unless it gives new ones, and a batch of another project never
touches them.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wheelforge.errors import InvalidInput
from wheelforge.fsutil import atomic_path, atomic_write, make_dir
from wheelforge.paths import ensure_inside, inside, remove_tree
from wheelforge.publish.release import Artifact, Role, sha256_bytes, sha256_file
from wheelforge.wheel.wheelfile import Wheel, parse_core_metadata

API_VERSION = "1.1"
PEP708_API_VERSION = "1.2"  # PEP 708: a page with tracks / alternate-locations says 1.2
_LOCK_NAME = ".wheelforge.lock"
_STAGING_NAME = ".simple.new"


@dataclass(frozen=True)
class IndexedFile:
    """One file as a project page lists it."""

    filename: str
    url: str  # relative to the project page
    sha256: str
    size: int
    requires_python: str | None = None
    metadata_sha256: str | None = None  # PEP 658: a {url}.metadata file exists

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "filename": self.filename,
            "url": self.url,
            "hashes": {"sha256": self.sha256},
            "size": self.size,
            "yanked": False,
        }
        if self.requires_python:
            entry["requires-python"] = self.requires_python
        if self.metadata_sha256:
            entry["core-metadata"] = {"sha256": self.metadata_sha256}
            entry["dist-info-metadata"] = {"sha256": self.metadata_sha256}  # before PEP 714
        return entry

    @classmethod
    def from_json(cls, entry: Any, source: str) -> IndexedFile:
        try:
            metadata = entry.get("core-metadata")
            return cls(
                filename=str(entry["filename"]),
                url=str(entry["url"]),
                sha256=str(entry["hashes"]["sha256"]),
                size=int(entry["size"]),
                requires_python=entry.get("requires-python"),
                metadata_sha256=metadata.get("sha256") if isinstance(metadata, dict) else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise InvalidInput(f"{source}: a 'files' entry is not one wheelforge wrote") from None


@dataclass(frozen=True)
class ProjectLinks:
    """PEP 708 on a project page: the projects on other repositories this one ``tracks``
    (the same project, mirrored), and the ``alternate_locations`` its namespace extends to."""

    tracks: tuple[str, ...] = ()
    alternate_locations: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.tracks or self.alternate_locations)

    def to_json(self) -> dict[str, list[str]]:
        return {"tracks": list(self.tracks), "alternate-locations": list(self.alternate_locations)}


@dataclass(frozen=True)
class Stored:
    """A file put into the site's store (it may have been there already)."""

    project: str
    file: IndexedFile
    new: bool


class Site:
    """A static index directory. Use :meth:`locked` around changes."""

    def __init__(self, root: Path) -> None:
        if root.exists() and not root.is_dir():
            raise InvalidInput(f"{root}: exists and is not a directory")
        self.root = root

    @property
    def simple(self) -> Path:
        return self.root / "simple"

    @contextmanager
    def locked(self) -> Iterator[Site]:
        """Hold the site's lock; clear what an interrupted writer left behind. A site
        whose lock, ``simple/``, ``files/`` or pages are symlinks is refused."""
        make_dir(self.root)
        lock_path = self.root / _LOCK_NAME
        self._refuse_link(lock_path)
        try:  # no write, no new mtime; O_NOFOLLOW: a symlink planted since is refused too
            fd = os.open(lock_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as err:
            raise InvalidInput(f"{lock_path}: cannot open the site lock ({err.strerror})") from None
        with os.fdopen(fd, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.check_layout()
            remove_tree(self.root / _STAGING_NAME, root=self.root)
            yield self

    def check_layout(self) -> None:
        """Refuse a site whose ``simple/`` (or anything in it), ``files/``, lock or
        staging directory is a symlink or lies outside the site."""
        for name in ("simple", "files", _STAGING_NAME, _LOCK_NAME):
            self._refuse_link(self.root / name)
        if self.simple.is_dir():
            for directory, dirs, files in os.walk(self.simple):
                for name in dirs + files:
                    self._refuse_link(Path(directory) / name)

    def _refuse_link(self, path: Path) -> None:
        if path.is_symlink():
            raise InvalidInput(
                f"{path}: a symlink in the site (to {os.readlink(path)}); a site holds only "
                "files and directories wheelforge wrote: remove it"
            )
        if os.path.lexists(path):
            ensure_inside(path, self.root, where=f"{self.root}: site path")

    def _store_path(self, *names: str) -> Path:
        """``files/names…``, each level checked: no symlink, nothing outside the site."""
        path = self.root / "files"
        self._refuse_link(path)
        for name in names:
            self._refuse_link(path / name)
            path = inside(path, name, where=f"{self.root}: store path")
        return path

    # -- reading --------------------------------------------------------------

    def projects(self) -> list[str]:
        if not self.simple.is_dir():
            return []
        return sorted(p.name for p in self.simple.iterdir() if (p / "index.json").is_file())

    def files(self, project: str) -> dict[str, IndexedFile]:
        """What the project page lists now, by filename."""
        page = self.simple / project / "index.json"
        if not page.is_file():
            return {}
        try:
            data = json.loads(page.read_bytes())
            entries = data["files"]
            if not isinstance(entries, list):
                raise TypeError
        except (ValueError, KeyError, TypeError, RecursionError):
            raise InvalidInput(f"{page}: not a PEP 691 project page") from None
        listed = (IndexedFile.from_json(entry, str(page)) for entry in entries)
        return {f.filename: f for f in listed}

    def links(self, project: str) -> ProjectLinks:
        """The PEP 708 links the project page carries now (none when there is no page)."""
        page = self.simple / project / "index.json"
        if not page.is_file():
            return ProjectLinks()
        try:
            data = json.loads(page.read_bytes())
            tracks = data["meta"].get("tracks", [])
            alternates = data.get("alternate-locations", [])
            if not all(isinstance(v, list) for v in (tracks, alternates)):
                raise TypeError
            if not all(isinstance(url, str) for url in tracks + alternates):
                raise TypeError
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            raise InvalidInput(f"{page}: not a PEP 691 project page wheelforge wrote") from None
        return ProjectLinks(tuple(tracks), tuple(alternates))

    def path_of(self, project: str, file: IndexedFile) -> Path:
        """Where the site holds ``file`` (its page's relative URL, kept inside the site)."""
        where = f"{self.simple / project / 'index.json'}: {file.filename}: url"
        return ensure_inside(self.simple / project / file.url, self.root, where=where)

    # -- the store ------------------------------------------------------------

    def check_new(self, artifacts: Iterable[Artifact]) -> None:
        """Refuse, before anything is written, a file whose name the site lists with
        other content (variants files excepted: they grow by merging)."""
        listed: dict[str, dict[str, IndexedFile]] = {}
        for artifact in artifacts:
            if artifact.role is Role.VARIANTS_FILE:
                continue
            if artifact.project not in listed:
                listed[artifact.project] = self.files(artifact.project)
            files = listed[artifact.project]
            existing = files.get(artifact.name)
            if existing is not None and existing.sha256 != sha256_file(artifact.path):
                raise InvalidInput(
                    f"{artifact.name}: the site already has a file of this name with other "
                    f"content (sha256 {existing.sha256[:16]}…); published files are never "
                    "replaced: bump the version or the build number"
                )

    def store(self, artifact: Artifact, data: bytes | None = None) -> Stored:
        """Put one file (``data``, or the artifact's own bytes) into the content-addressed
        store, with its PEP 658 metadata; nothing is listed until :meth:`publish_pages`."""
        if data is None:
            sha256 = sha256_file(artifact.path)
            size = artifact.path.stat().st_size
        else:
            sha256 = sha256_bytes(data)
            size = len(data)
        target = self._store_path(artifact.project, sha256[:16], artifact.name)
        new = not target.exists()
        if new:
            with atomic_path(target) as tmp:
                if data is None:
                    shutil.copyfile(artifact.path, tmp)
                else:
                    tmp.write_bytes(data)
        else:
            _verify(target, sha256)
        try:
            metadata = _core_metadata(artifact)
            metadata_sha256 = requires_python = None
            if metadata is not None:
                raw, _ = parse_core_metadata(metadata)
                requires_python = raw.get("requires_python")
            if metadata is not None and artifact.is_wheel:  # PEP 658 is served for wheels
                metadata_sha256 = sha256_bytes(metadata)
                sidecar = self._store_path(
                    artifact.project, sha256[:16], artifact.name + ".metadata"
                )
                if not sidecar.exists():
                    atomic_write(sidecar, metadata)
                else:
                    _verify(sidecar, metadata_sha256)
        except BaseException:  # an unreadable wheel: no unlisted file is left behind
            if new:
                target.unlink(missing_ok=True)
                for directory in (target.parent, target.parent.parent):
                    try:
                        directory.rmdir()  # only when empty
                    except OSError:
                        break
            raise
        url = f"../../files/{artifact.project}/{sha256[:16]}/{artifact.name}"
        file = IndexedFile(artifact.name, url, sha256, size, requires_python, metadata_sha256)
        return Stored(artifact.project, file, new)

    def discard(self, stored: Iterable[Stored]) -> None:
        """Remove files this run put into the store and never listed (with their
        ``.metadata``), and the directories that leaves empty: a failed batch leaves no
        unlisted file behind. Call with the lock held."""
        for item in stored:
            path = self._store_path(item.project, item.file.sha256[:16], item.file.filename)
            for leftover in (path, path.with_name(path.name + ".metadata")):
                if leftover.is_file() and not leftover.is_symlink():
                    leftover.unlink()
            for directory in (path.parent, path.parent.parent):
                try:
                    directory.rmdir()  # only when empty
                except OSError:
                    break

    # -- the pages ------------------------------------------------------------

    def publish_pages(
        self,
        additions: Mapping[str, Iterable[IndexedFile]],
        links: Mapping[str, ProjectLinks] | None = None,
    ) -> list[str]:
        """List ``additions`` (project -> files) on their project pages, replacing an
        entry of the same filename; a project in ``links`` gets those PEP 708 links
        (replacing the page's), any other keeps the ones its page has. Swap the new pages
        in atomically. Returns the projects whose pages changed."""
        links = links or {}
        staging = self.root / _STAGING_NAME
        self.check_layout()
        remove_tree(staging, root=self.root)
        if self.simple.is_dir():
            shutil.copytree(self.simple, staging, copy_function=_link_or_copy)
        else:
            staging.mkdir(parents=True)
        changed = []
        for project, files in sorted(additions.items()):
            listed = self.files(project)
            before = dict(listed)
            for file in files:
                listed[file.filename] = file
            kept = self.links(project)
            wanted = links.get(project, kept)
            page = self.simple / project / "index.json"
            if listed != before or wanted != kept or not page.is_file():
                _write_project_pages(staging / project, project, listed.values(), wanted)
                changed.append(project)
        projects = sorted(set(self.projects()) | set(additions))
        _write_if_changed(staging / "index.html", _render("root.html", projects=projects))
        _write_if_changed(staging / "index.json", _json_root(projects))
        _swap_in(staging, self.simple)
        return changed


# -- rendering ----------------------------------------------------------------------


@functools.cache
def _templates() -> Any:
    import jinja2

    from wheelforge.templating import sandboxed

    return sandboxed(  # wheelforge's own templates; a page of many files may be long
        bounded_render=False,
        loader=jinja2.PackageLoader("wheelforge", "templates/index"),
        autoescape=True,
        trim_blocks=True,
        keep_trailing_newline=True,
    )


def _render(template: str, api_version: str = API_VERSION, **context: Any) -> bytes:
    text: str = _templates().get_template(template).render(api_version=api_version, **context)
    return text.encode()


def _json_root(projects: list[str]) -> bytes:
    document = {"meta": {"api-version": API_VERSION}, "projects": [{"name": p} for p in projects]}
    return _json_bytes(document)


def project_json(
    project: str, files: Iterable[IndexedFile], links: ProjectLinks = ProjectLinks()
) -> bytes:
    """The PEP 691 page; with PEP 708 links, ``meta.tracks`` and the top-level
    ``alternate-locations`` (each only when non-empty) and api-version 1.2."""
    ordered = sorted(files, key=lambda f: f.filename)
    versions = sorted({_version_of(f.filename) for f in ordered} - {None}, key=str)
    meta: dict[str, Any] = {"api-version": PEP708_API_VERSION if links else API_VERSION}
    if links.tracks:
        meta["tracks"] = list(links.tracks)
    document: dict[str, Any] = {
        "meta": meta,
        "name": project,
        "files": [f.to_json() for f in ordered],
        "versions": versions,
    }
    if links.alternate_locations:
        document["alternate-locations"] = list(links.alternate_locations)
    return _json_bytes(document)


def _write_project_pages(
    directory: Path, project: str, files: Iterable[IndexedFile], links: ProjectLinks
) -> None:
    ordered = sorted(files, key=lambda f: f.filename)
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("index.html", "index.json"):
        (directory / name).unlink(missing_ok=True)  # a hard link to the old page
    html = _render(
        "project.html",
        api_version=PEP708_API_VERSION if links else API_VERSION,
        name=project,
        files=ordered,
        tracks=links.tracks,
        alternate_locations=links.alternate_locations,
    )
    (directory / "index.html").write_bytes(html)
    (directory / "index.json").write_bytes(project_json(project, ordered, links))


def _json_bytes(document: Any) -> bytes:
    return (json.dumps(document, indent=1, sort_keys=True) + "\n").encode()


def _version_of(filename: str) -> str | None:
    from wheelforge.publish.release import classify

    try:
        artifact = classify(Path(filename))
    except InvalidInput:
        return None
    return artifact.version if artifact is not None else None


def _write_if_changed(path: Path, data: bytes) -> None:
    if path.is_file() and path.read_bytes() == data:
        return
    path.unlink(missing_ok=True)
    path.write_bytes(data)


# -- files --------------------------------------------------------------------------


def _verify(path: Path, sha256: str) -> None:
    """A store file that is there already is trusted only if its bytes match its name."""
    found = sha256_file(path)
    if found != sha256:
        raise InvalidInput(
            f"{path}: already in the site's store with other content (sha256 {found[:16]}…, "
            f"expected {sha256[:16]}…); a store file never changes: remove it and run again"
        )


def _core_metadata(artifact: Artifact) -> bytes | None:
    if artifact.is_wheel:
        with Wheel(artifact.path) as wheel:
            return wheel.core_metadata()
    if artifact.role is Role.FALLBACK:
        from wheelforge.publish.check import sdist_metadata

        return sdist_metadata(artifact.path)
    return None


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _swap_in(staging: Path, live: Path) -> None:
    """Make ``staging`` the live directory in one step; remove the old one."""
    if not live.exists():
        os.rename(staging, live)
        return
    if _exchange(staging, live):
        shutil.rmtree(staging)  # now the old pages
        return
    old = live.with_name(live.name + ".old")  # no renameat2: a moment without pages
    shutil.rmtree(old, ignore_errors=True)
    os.rename(live, old)
    os.rename(staging, live)
    shutil.rmtree(old)


def _exchange(a: Path, b: Path) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(
        _AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), ctypes.c_uint(_RENAME_EXCHANGE)
    )
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))
