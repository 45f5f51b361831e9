"""Isolated sources: every job builds from its own pristine copy, never the project tree.

Two modes (matrix ``project.source``):

- ``sdist`` (default): the project's files are copied once to a staging directory, the
  sdist is built from that copy (PEP 517 ``build_sdist``, isolated), repacked so that it
  is byte-reproducible whatever the backend, and unpacked afresh for every job. This is
  what ``python -m build`` does, and it catches an incomplete sdist before users do.
- ``tree``: for projects whose sdist cannot build; the project's files (``git ls-files``,
  tracked and untracked-but-not-ignored, else the tree minus build outputs) are copied
  for every job.

For backends whose sdist is an export of a version-control checkout (meson-python:
``meson dist`` refuses to run outside a git or Mercurial repository and archives only
what is committed), the copy is made a git repository of its own with every copied file
committed, so that the sdist holds the same files as with any other backend.

The project tree itself is only read. :func:`tree_snapshot` is a cheap (``stat``-only)
fingerprint taken before the builds and compared after each, so that a backend that
writes into the tree anyway is caught, named and kept out of the cache.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from wheelforge.errors import InvalidInput
from wheelforge.fsutil import file_sha256

SOURCE_MODES = ("sdist", "tree")

# Not part of a project's source when there is no git to ask: VCS data, environments,
# caches and build outputs.
_SKIPPED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        "build",
        "dist",
        "__pycache__",
        ".wheelforge",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
        ".nox",
    }
)


# Build backends that make the sdist by exporting a VCS checkout (``meson dist``).
VCS_EXPORT_BACKENDS = frozenset({"mesonpy"})


@dataclass(frozen=True)
class ProjectFiles:
    """The files that make up a project's source, relative to its directory."""

    root: Path
    names: tuple[str, ...]  # POSIX relative paths, sorted

    def digest(self) -> str:
        """sha256 over every file's relative path, kind and content."""
        digest = hashlib.sha256()
        for name in self.names:
            path = self.root / name
            digest.update(name.encode() + b"\0")
            if path.is_symlink():
                digest.update(b"link:" + os.readlink(path).encode() + b"\0")
                continue
            mode = path.stat().st_mode
            digest.update(b"x" if mode & stat.S_IXUSR else b"-")
            digest.update(file_sha256(path).encode())
        return digest.hexdigest()

    def copy_to(self, dest: Path) -> Path:
        """Copy the files (symbolic links as links) under ``dest``; return ``dest``. For a
        backend that exports its sdist from version control, the copy is a git repository
        with every file committed (see :func:`commit_all`)."""
        for name in self.names:
            source, target = self.root / name, dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target, follow_symlinks=False)
        backend = build_backend(self.root)
        if backend in VCS_EXPORT_BACKENDS:
            commit_all(
                dest, self.names, why=f"its build backend, {backend}, exports its sdist from git"
            )
        return dest


def build_backend(project: Path) -> str | None:
    """``build-system.build-backend`` of the project's pyproject.toml, if it says."""
    try:
        with open(project / "pyproject.toml", "rb") as f:
            backend = tomllib.load(f).get("build-system", {}).get("build-backend")
    except (OSError, tomllib.TOMLDecodeError, AttributeError):
        return None
    return backend if isinstance(backend, str) else None


_GIT_DATE = "@315532800 +0000"  # 1980: the commit is not part of any output


def commit_all(repo: Path, names: Sequence[str], *, why: str) -> None:
    """Make ``repo`` a git repository of its own whose one commit holds exactly ``names``
    (files the project's own git would track, so none is left out by an ignore rule). The
    user's git configuration is not read: no hooks, no signing, no templates."""
    env = {
        **os.environ,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_LITERAL_PATHSPECS": "1",  # names, not patterns
        "GIT_AUTHOR_NAME": "wheelforge",
        "GIT_AUTHOR_EMAIL": "wheelforge@localhost",
        "GIT_AUTHOR_DATE": _GIT_DATE,
        "GIT_COMMITTER_NAME": "wheelforge",
        "GIT_COMMITTER_EMAIL": "wheelforge@localhost",
        "GIT_COMMITTER_DATE": _GIT_DATE,
    }
    env.pop("GIT_DIR", None)
    env.pop("GIT_WORK_TREE", None)
    env.pop("GIT_INDEX_FILE", None)
    steps = [
        ["git", "init", "-q", "--template=", "."],
        ["git", "add", "-f", "--pathspec-from-file=-", "--pathspec-file-nul"],
        ["git", "commit", "-q", "--no-verify", "--no-gpg-sign", "-m", "wheelforge source copy"],
    ]
    listing = b"".join(os.fsencode(name) + b"\0" for name in names)
    for command in steps:
        try:
            result = subprocess.run(
                command,
                cwd=repo,
                env=env,
                input=listing if "add" in command else None,
                capture_output=True,
                check=False,
            )
        except OSError:
            raise InvalidInput(
                f"{repo}: git is needed to copy this project ({why}); install git"
            ) from None
        if result.returncode != 0:
            said = result.stderr.decode(errors="replace").strip().splitlines() or ["no output"]
            raise InvalidInput(f"{repo}: {' '.join(command[:2])} failed: {said[-1]}")


def project_files(project: Path) -> ProjectFiles:
    """The project's source files: what git tracks or would track (``--exclude-standard``)
    when the project is in a git work tree, else every file outside build outputs."""
    names = _git_files(project)
    if names is None:
        names = list(_walk_files(project))
    kept = sorted(
        name
        for name in names
        if (project / name).is_symlink() or (project / name).is_file()  # deleted, submodules
    )
    return ProjectFiles(project, tuple(kept))


def _git_files(project: Path) -> list[str] | None:
    try:
        result = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "."],
            cwd=project,
            capture_output=True,
            check=False,
        )
    except OSError:  # no git
        return None
    if result.returncode != 0:  # not a work tree
        return None
    names = [os.fsdecode(raw) for raw in result.stdout.split(b"\0") if raw]
    # Nothing listed: the project lies in an ignored folder of an enclosing work tree.
    return sorted(set(names)) or None


def _walk_files(project: Path) -> Iterable[str]:
    for root, dirs, files in os.walk(project):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS and not d.endswith(".egg-info"))
        for name in files:
            yield (Path(root) / name).relative_to(project).as_posix()


# -- the tree check ------------------------------------------------------------------


def tree_snapshot(project: Path, *, exclude: Sequence[Path] = ()) -> dict[str, tuple[int, ...]]:
    """Every path under ``project`` (``.git`` and ``exclude`` left out) with its type,
    size, mode and modification time: enough to see any write, without reading a byte."""
    skipped = {p.resolve() for p in exclude}
    snapshot: dict[str, tuple[int, ...]] = {}
    for root, dirs, files in os.walk(project):
        here = Path(root)
        dirs[:] = [d for d in dirs if d != ".git" and (here / d).resolve() not in skipped]
        for name in [*dirs, *files]:
            path = here / name
            try:
                info = path.lstat()
            except FileNotFoundError:
                continue
            key = path.relative_to(project).as_posix()
            if stat.S_ISDIR(info.st_mode):
                snapshot[key + "/"] = (info.st_mode,)
            else:
                snapshot[key] = (info.st_mode, info.st_size, info.st_mtime_ns)
    return snapshot


def tree_changes(
    before: Mapping[str, tuple[int, ...]], after: Mapping[str, tuple[int, ...]]
) -> list[str]:
    """What changed between two snapshots, one ``added|removed|changed: PATH`` each."""
    changes = [f"added: {p}" for p in after if p not in before]
    changes += [f"removed: {p}" for p in before if p not in after]
    changes += [f"changed: {p}" for p in before if p in after and before[p] != after[p]]
    return sorted(changes, key=lambda line: line.split(": ", 1)[1])


# -- sdists ----------------------------------------------------------------------------


def normalize_sdist(sdist: Path, dest: Path, *, source_date_epoch: int) -> Path:
    """Repack ``sdist`` so that its bytes depend on its content alone: members sorted,
    one owner, ``SOURCE_DATE_EPOCH`` as every time stamp, no gzip name or time. Backends
    differ here (setuptools stamps the build time), and separate CI jobs must produce
    the same release sdist. Members are streamed, never held in memory whole."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with (
            # Uncompressed first: members are read in name order, and seeking backwards in
            # a gzip stream decompresses it again from the start.
            tempfile.TemporaryFile(dir=dest.parent) as plain,
            _plain_tar(sdist, plain) as source,
            open(dest, "wb") as f,
            gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as out,
        ):
            for info in _sorted_members(source, sdist):
                info.mtime = min(int(info.mtime), source_date_epoch)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.pax_headers = {}
                out.addfile(info, source.extractfile(info) if info.isfile() else None)
    except (tarfile.TarError, OSError, EOFError) as err:
        dest.unlink(missing_ok=True)
        raise InvalidInput(f"{sdist}: not a readable sdist ({err})") from None
    return dest


@contextlib.contextmanager
def _plain_tar(sdist: Path, scratch: IO[bytes]) -> Iterator[tarfile.TarFile]:
    with gzip.open(sdist, "rb") as compressed:
        shutil.copyfileobj(compressed, scratch, 1 << 20)
    scratch.seek(0)
    with tarfile.open(fileobj=scratch, mode="r:") as archive:
        yield archive


def _sorted_members(archive: tarfile.TarFile, sdist: Path) -> list[tarfile.TarInfo]:
    members = sorted(archive.getmembers(), key=lambda info: info.name)
    for info in members:
        if not (info.isfile() or info.isdir() or info.issym()):
            raise InvalidInput(f"{sdist}: member {info.name!r} is not a file")
    return members


def sdist_digest(sdist: Path) -> str:
    """sha256 over the sdist's members (names, kinds, executable bits and contents), so
    that the build key does not change with a backend's time stamps."""
    digest = hashlib.sha256()
    try:
        with tarfile.open(sdist, "r:gz") as archive:
            for info in _sorted_members(archive, sdist):
                digest.update(info.name.encode() + b"\0")
                if info.issym():
                    digest.update(b"link:" + info.linkname.encode() + b"\0")
                elif info.isfile():
                    digest.update(b"x" if info.mode & stat.S_IXUSR else b"-")
                    member = hashlib.sha256()
                    extracted = archive.extractfile(info)
                    assert extracted is not None  # a regular file
                    while chunk := extracted.read(1 << 20):
                        member.update(chunk)
                    digest.update(member.digest())
    except (tarfile.TarError, OSError, EOFError) as err:
        raise InvalidInput(f"{sdist}: not a readable sdist ({err})") from None
    return digest.hexdigest()


def unpack_sdist(sdist: Path, dest: Path) -> Path:
    """Unpack into ``dest`` (tarfile's ``data`` filter: nothing outside, no devices);
    return the sdist's top directory."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(sdist, "r:gz") as archive:
            archive.extractall(dest, filter="data")
    except (tarfile.TarError, OSError, EOFError) as err:
        raise InvalidInput(f"{sdist}: cannot unpack ({err})") from None
    tops = [p for p in dest.iterdir() if p.is_dir()]
    if len(tops) != 1 or not (tops[0] / "pyproject.toml").is_file():
        raise InvalidInput(f"{sdist}: expected one top-level directory with a pyproject.toml")
    return tops[0]
