"""The files of a release set in a ``dist/`` directory, and the order they are published in.

A release is every wheel of one name and version, its sdist, and its
``{name}-{version}-variants.json``. Fallbacks (sdists, plain wheels, the null variant)
go out first, variant wheels next, the variants file last: a set interrupted half-way
leaves installers on the fallback, never on a label without its wheel.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import InvalidSdistFilename, canonicalize_name, parse_sdist_filename
from packaging.version import InvalidVersion, Version

from wheelforge.errors import InvalidInput
from wheelforge.fsutil import file_sha256
from wheelforge.variants.labels import NULL_LABEL
from wheelforge.wheel.filename import WheelFilename

VARIANTS_SUFFIX = "-variants.json"
SDIST_SUFFIXES = (".tar.gz", ".zip")


class Role(enum.IntEnum):
    """What an artifact is for, in publishing order."""

    FALLBACK = 0  # sdist, plain wheel, null variant
    VARIANT = 1  # a wheel with a (non-null) label
    VARIANTS_FILE = 2  # {name}-{version}-variants.json


@dataclass(frozen=True)
class Artifact:
    path: Path
    project: str  # canonical (PEP 503) name
    version: str
    role: Role
    label: str | None = None  # wheels only

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def is_wheel(self) -> bool:
        return self.path.suffix == ".whl"

    @property
    def is_plain_wheel(self) -> bool:
        return self.is_wheel and self.label is None


def classify(path: Path) -> Artifact | None:
    """The artifact a file is, ``None`` for a file that is not published (logs,
    manifests); :class:`InvalidInput` for a distribution file whose name does not parse,
    or that is a symbolic link: a release set holds its files (a link in a job's dist/,
    perhaps from a pull request, would have check read and merge, index and publish copy
    a file from anywhere on the machine)."""
    name = path.name
    if path.is_symlink() and name.endswith((".whl", VARIANTS_SUFFIX, *SDIST_SUFFIXES)):
        raise InvalidInput(
            f"{name}: a symbolic link (to {_link_target(path)}); expected a regular file "
            "(copy the file in)"
        )
    if name.endswith(".whl"):
        wheel = WheelFilename.parse(name)
        project, version = wheel.release
        fallback = wheel.label is None or wheel.label == NULL_LABEL
        role = Role.FALLBACK if fallback else Role.VARIANT
        return Artifact(path, canonicalize_name(project), version, role, wheel.label)
    if name.endswith(VARIANTS_SUFFIX):
        stem = name[: -len(VARIANTS_SUFFIX)]
        project, sep, version = stem.rpartition("-")
        try:
            if not sep or not project:
                raise InvalidVersion
            version = str(Version(version))
        except InvalidVersion:
            raise InvalidInput(
                f"{name}: expected {{name}}-{{version}}{VARIANTS_SUFFIX} with a valid version"
            ) from None
        return Artifact(path, canonicalize_name(project), version, Role.VARIANTS_FILE)
    if name.endswith(SDIST_SUFFIXES):
        try:
            project, sdist_version = parse_sdist_filename(name)
        except InvalidSdistFilename as err:
            raise InvalidInput(f"{name}: {err}") from None
        return Artifact(path, canonicalize_name(project), str(sdist_version), Role.FALLBACK)
    return None


def _link_target(path: Path) -> str:
    try:
        return repr(os.readlink(path))[:200]
    except OSError:
        return "an unreadable target"


def artifacts_in(directory: Path) -> list[Artifact]:
    """Every publishable file of ``directory``, in publishing order."""
    if not directory.is_dir():
        raise InvalidInput(f"{directory}: expected a directory of wheels")
    found = []
    for path in directory.iterdir():
        if path.is_file() and not path.name.startswith("."):
            artifact = classify(path)
            if artifact is not None:
                found.append(artifact)
    if not found:
        raise InvalidInput(f"{directory}: no wheels, sdists or variants files to publish")
    return in_publish_order(found)


def in_publish_order(artifacts: list[Artifact]) -> list[Artifact]:
    """Fallbacks, then variant wheels, then variants files; sdists and plain wheels
    before the null variant; by name within each group."""
    return sorted(artifacts, key=lambda a: (a.role, a.label is not None, a.name))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """The file's sha256, computed once per (path, size, mtime): publishing asks for it
    at each step, and a wheel may be gigabytes."""
    stat = path.stat()
    return _sha256(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    del size, mtime_ns  # the cache key
    return file_sha256(path)
