"""Merging the ``dist/`` directories of separate CI jobs into one release set.

Each GitHub Actions job builds part of a matrix and uploads its ``dist/``; the publish
job downloads them all (one directory per job) and merges them here. A file that several
jobs hold with the same sha256 is kept once; the same name with other content is a
conflict. The manifests are united; the variants file is written fresh from the merged
wheels, once every job's own variants file has been checked against it. Everything is
checked before anything is written, and ``out`` appears whole or not at all.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wheelforge.build.manifest import MANIFEST_NAME, read_manifest
from wheelforge.errors import InvalidInput
from wheelforge.fsutil import make_dir
from wheelforge.publish.release import Role, classify, sha256_file
from wheelforge.variants.merge import merge_all
from wheelforge.variants.metadata import Schema, VariantMetadata, dumps, loads
from wheelforge.variants_file import Release, wheel_variant_metadata
from wheelforge.wheel.filename import WheelFilename

_EXPECTED = "expected a directory of built wheels (a job's dist/)"
# Manifest fields that say how a runner made a file, not what it is: a job built on one
# runner and taken from the cache on another is still the same artifact.
_PER_RUNNER = frozenset({"log", "compiler_cache", "compiled"})
_SOURCES_HINT = "pass the directories the build jobs uploaded, one per job (e.g. artifacts/*)"


@dataclass(frozen=True)
class MergeResult:
    out: Path
    files: Mapping[str, tuple[Path, ...]]  # wheels and sdists: name -> the sources holding it
    collapsed: int  # copies left out because another source held the same bytes
    manifest: Path | None  # None: no source had a manifest
    variants_files: tuple[Path, ...]
    unchanged: bool  # ``out`` already held exactly this result

    def to_json(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "files": {name: [str(s) for s in sources] for name, sources in self.files.items()},
            "collapsed": self.collapsed,
            "manifest": str(self.manifest) if self.manifest is not None else None,
            "variants_files": [str(p) for p in self.variants_files],
            "unchanged": self.unchanged,
        }


@dataclass(frozen=True)
class _Source:
    directory: Path
    dists: tuple[Path, ...]  # wheels and sdists
    variants_files: tuple[Path, ...]
    manifest: Path | None


def merge_dists(
    sources: Sequence[Path], out: Path, *, schema: Schema = Schema.PROVIDERS_V0_2_0
) -> MergeResult:
    """Merge the jobs' ``dist/`` directories into ``out`` (see the module docstring)."""
    if not sources:
        raise InvalidInput(f"no source directories given: {_EXPECTED}", hint=_SOURCES_HINT)
    for source in sources:
        if source.resolve() == out.resolve():
            raise InvalidInput(
                f"{out}: is also a source; expected --out to be a new or empty directory"
            )
    scanned = [_scan(source) for source in sources]
    picked, digests, origins = _pick_files(scanned)
    contents: dict[str, Path | bytes] = dict(sorted(picked.items()))
    manifest = _merged_manifest(scanned, digests)
    if manifest is not None:
        contents[MANIFEST_NAME] = manifest
    variants = _variants_files(scanned, picked, origins, schema)
    contents.update(variants)

    _clear_stale_tmp(out)
    unchanged = _holds_result(out, contents, digests)
    if not unchanged:
        _write_dir(out, contents)
    return MergeResult(
        out=out,
        files={name: tuple(origins[name]) for name in sorted(picked)},
        collapsed=sum(len(dirs) - 1 for dirs in origins.values()),
        manifest=out / MANIFEST_NAME if manifest is not None else None,
        variants_files=tuple(out / name for name in sorted(variants)),
        unchanged=unchanged,
    )


def _scan(directory: Path) -> _Source:
    if not directory.is_dir():
        raise InvalidInput(f"{directory}: not a directory; {_EXPECTED}", hint=_SOURCES_HINT)
    dists: list[Path] = []
    variants_files: list[Path] = []
    manifest = None
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.name == MANIFEST_NAME:
            manifest = path
            continue
        try:
            artifact = classify(path)
        except InvalidInput as err:
            raise InvalidInput(f"{directory}: {err.message}") from None
        if artifact is None:
            continue  # logs and the like
        if artifact.role is Role.VARIANTS_FILE:
            variants_files.append(path)
        else:
            dists.append(path)
    if not dists:
        raise InvalidInput(f"{directory}: no wheels or sdists; {_EXPECTED}", hint=_SOURCES_HINT)
    return _Source(directory, tuple(dists), tuple(variants_files), manifest)


def _pick_files(
    sources: Sequence[_Source],
) -> tuple[dict[str, Path], dict[str, str], dict[str, list[Path]]]:
    """One path per file name, its sha256, and every source that holds it."""
    picked: dict[str, Path] = {}
    digests: dict[str, str] = {}
    origins: dict[str, list[Path]] = defaultdict(list)
    for source in sources:
        for path in source.dists:
            digest = sha256_file(path)
            first = picked.setdefault(path.name, path)
            known = digests.setdefault(path.name, digest)
            if known != digest:
                raise InvalidInput(
                    f"conflict: {path.name} differs between {first.parent} and "
                    f"{source.directory} (sha256 {known}, {digest})",
                    hint="two jobs built the same file differently: give each job its own "
                    "--only, or make the build reproducible",
                )
            origins[path.name].append(source.directory)
    return picked, digests, origins


def _merged_manifest(sources: Sequence[_Source], digests: Mapping[str, str]) -> bytes | None:
    """The union of the manifests' entries (``None`` when no source has one)."""
    matrix: tuple[Path, Any] | None = None
    by_job: dict[str, tuple[Path, dict[str, Any]]] = {}
    by_file: dict[str, tuple[Path, str]] = {}
    found = False
    for source in sources:
        if source.manifest is None:
            continue
        found = True
        path = source.manifest
        data = read_manifest(source.directory)
        if data.get("version") != 1:
            raise InvalidInput(f"{path}: version {data.get('version')!r}, expected 1")
        if "matrix" in data:
            if matrix is None:
                matrix = (source.directory, data["matrix"])
            elif matrix[1] != data["matrix"]:
                raise InvalidInput(
                    f"conflict: {matrix[0]} and {source.directory} were built from different "
                    f"matrices ({matrix[1]!r}, {data['matrix']!r})"
                )
        jobs_here: set[str] = set()
        for entry in data["artifacts"]:
            job, file = _entry_key(entry, path)
            if job in jobs_here:
                raise InvalidInput(f"{path}: lists job {job!r} twice; expected one entry a job")
            jobs_here.add(job)
            if file not in digests:
                raise InvalidInput(
                    f"{path}: lists {file} (job {job!r}), which is in none of the sources"
                )
            if entry.get("sha256") != digests[file]:
                raise InvalidInput(
                    f"{path}: records sha256 {entry.get('sha256')} for {file}, but the file "
                    f"has {digests[file]}"
                )
            claimed = by_file.setdefault(file, (source.directory, job))
            if claimed[1] != job:
                raise InvalidInput(
                    f"conflict: {file} is job {claimed[1]!r}'s in {claimed[0]} but job "
                    f"{job!r}'s in {source.directory}"
                )
            seen = by_job.setdefault(job, (source.directory, entry))
            if seen[1].get("file") != file:
                raise InvalidInput(
                    f"conflict: job {job!r} produced {seen[1].get('file')} in {seen[0]} but "
                    f"{file} in {source.directory}"
                )
            keys = sorted(
                k
                for k in seen[1].keys() | entry.keys()
                if k not in _PER_RUNNER and seen[1].get(k) != entry.get(k)
            )
            if keys:
                raise InvalidInput(
                    f"conflict: the {MANIFEST_NAME} entries of job {job!r} differ between "
                    f"{seen[0]} and {source.directory} (in {', '.join(keys)})"
                )
    if not found:
        return None
    document: dict[str, Any] = {"version": 1}
    if matrix is not None:
        document["matrix"] = matrix[1]
    document["artifacts"] = [entry for _, (_, entry) in sorted(by_job.items())]
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


def _entry_key(entry: object, path: Path) -> tuple[str, str]:
    if isinstance(entry, dict):
        job, file = entry.get("job"), entry.get("file")
        if isinstance(job, str) and isinstance(file, str):
            return job, file
    raise InvalidInput(f"{path}: expected artifact entries with a 'job' and a 'file'")


def _variants_files(
    sources: Sequence[_Source],
    picked: Mapping[str, Path],
    origins: Mapping[str, Sequence[Path]],
    schema: Schema,
) -> dict[str, bytes]:
    """Each release's variants file, made from the merged wheels, once every job's own
    variants file is found to agree with it."""
    listed: dict[str, list[tuple[str, VariantMetadata]]] = defaultdict(list)
    for source in sources:
        for path in source.variants_files:
            name = f"{source.directory}/{path.name}"
            listed[path.name].append((name, loads(path.read_bytes(), source=name)))
    for metas in listed.values():
        merge_all(metas)  # two jobs that disagree: the error names both

    groups: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for name, path in picked.items():
        if name.endswith(".whl"):
            filename = WheelFilename.parse(name)
            if filename.label is not None:
                groups[filename.release].append(path)
    from_wheels: dict[str, VariantMetadata] = {}
    for (project, version), wheels in sorted(groups.items()):
        release = Release(project, version, tuple(wheels), ())
        from_wheels[release.variants_json_name] = merge_all(
            (f"{origins[p.name][0]}/{p.name}", wheel_variant_metadata(p)) for p in wheels
        )

    for file_name, metas in sorted(listed.items()):
        expected = from_wheels.get(file_name)
        if expected is not None:
            merge_all([*metas, ("the merged wheels", expected)])
        for name, meta in metas:
            for label in sorted(meta.variants):
                if expected is None or label not in expected.variants:
                    raise InvalidInput(
                        f"{name}: lists label {label!r}, but no source has a wheel with it"
                    )
    return {name: dumps(meta, schema).encode() for name, meta in from_wheels.items()}


def _holds_result(
    out: Path, contents: Mapping[str, Path | bytes], digests: Mapping[str, str]
) -> bool:
    """Whether ``out`` already holds exactly ``contents``: ``False`` when it is missing or
    empty; :class:`InvalidInput` when it holds anything else."""
    if out.is_symlink():
        raise InvalidInput(
            f"{out}: is a symbolic link; expected --out to be a real directory "
            "(new, empty, or from an identical earlier merge)"
        )
    if not out.exists():
        return False
    if not out.is_dir():
        raise InvalidInput(
            f"{out}: exists and is not a directory; remove it or choose another --out"
        )
    present = {p.name: p for p in out.iterdir()}
    if not present:
        return False
    visible = {name for name in present if not name.startswith(".")}
    same = visible == set(contents) and all(
        present[name].is_file()
        and (
            sha256_file(present[name]) == digests[name]
            if isinstance(content, Path)
            else present[name].read_bytes() == content
        )
        for name, content in contents.items()
    )
    if not same:
        raise InvalidInput(
            f"{out}: exists and holds other files; remove it or choose another --out"
        )
    return True


def _tmp_name(out: Path) -> str:
    """The scratch sibling a merge into ``out`` writes: ``.OUT.PID.HEX.tmp``."""
    return f".{out.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def _clear_stale_tmp(out: Path) -> list[Path]:
    """Remove the scratch siblings of ``out`` left by merges that were killed: only
    directories (not links) named as :func:`_tmp_name` names them (or as merges before
    the PID was in the name did), owned by this user, whose process is gone."""
    pattern = re.compile(rf"\.{re.escape(out.name)}\.(?:(\d+)\.)?[0-9a-f]{{8}}\.tmp")
    cleared: list[Path] = []
    try:
        siblings = list(out.parent.iterdir())
    except OSError:
        return cleared  # no parent yet: nothing left behind
    for path in siblings:
        match = pattern.fullmatch(path.name)
        if match is None or path.is_symlink() or not path.is_dir():
            continue
        if path.lstat().st_uid != os.getuid():
            continue
        if match.group(1) is not None and _alive(int(match.group(1))):
            continue  # perhaps a merge still running
        shutil.rmtree(path, ignore_errors=True)
        cleared.append(path)
    return cleared


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    except (OverflowError, OSError):
        return False
    return True


def _write_dir(out: Path, contents: Mapping[str, Path | bytes]) -> None:
    """Write ``contents`` into a temporary sibling of ``out``, then rename it into place."""
    make_dir(out.parent)
    tmp = out.parent / _tmp_name(out)
    tmp.mkdir()
    try:
        for name, content in contents.items():
            if isinstance(content, Path):
                shutil.copyfile(content, tmp / name)
            else:
                (tmp / name).write_bytes(content)
        if out.is_dir():
            out.rmdir()  # empty: checked by _holds_result
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
