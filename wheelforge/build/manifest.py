"""The manifest beside the wheels in ``dist/``: what each job produced, from what.

Separate CI jobs hand it to the publish job; a re-run replaces its own jobs' entries
(and their old files) and keeps the others.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from wheelforge.errors import InvalidInput
from wheelforge.formats import parse_json
from wheelforge.fsutil import atomic_write, file_sha256
from wheelforge.matrix import Job
from wheelforge.paths import inside

MANIFEST_NAME = "wheelforge-manifest.json"


@dataclass(frozen=True)
class Artifact:
    job: str
    kind: str
    label: str | None
    properties: list[str]
    python: str
    file: str
    sha256: str
    size: int
    compression: str
    input_hash: str
    log: str | None
    compiler_cache: dict[str, object] | None = None  # the build's hits and misses
    compile_hash: str | None = None  # the unrepaired wheel's cache key (input_hash: the repaired's)
    compiled: bool | None = None  # whether this run compiled it (False: repaired or cached)

    @classmethod
    def of(
        cls,
        job: Job,
        wheel: Path,
        *,
        key: str,
        compile_key: str,
        compiled: bool,
        log: Path | None,
        compiler_cache: dict[str, object] | None = None,
    ) -> Artifact:
        return cls(
            job=job.id,
            kind=job.kind,
            label=job.label,
            properties=sorted(str(p) for p in job.properties),
            python=job.python,
            file=wheel.name,
            sha256=file_sha256(wheel),
            size=wheel.stat().st_size,
            compression=job.compression,
            input_hash=key,
            log=str(log) if log is not None else None,
            compiler_cache=compiler_cache,
            compile_hash=compile_key,
            compiled=compiled,
        )

    @classmethod
    def of_sdist(cls, job: str, sdist: Path, *, key: str) -> Artifact:
        """The release's sdist: what every job built from (``input_hash``: its content)."""
        return cls(
            job=job,
            kind="sdist",
            label=None,
            properties=[],
            python="",
            file=sdist.name,
            sha256=file_sha256(sdist),
            size=sdist.stat().st_size,
            compression="gzip",
            input_hash=key,
            log=None,
        )


def read_manifest(out: Path) -> dict[str, Any]:
    """The manifest in ``out``: every artifact entry an object whose ``file`` names a
    file in ``out`` itself (a manifest may come from elsewhere: a CI job, a pull request)."""
    path = out / MANIFEST_NAME
    if not path.exists():
        return {"version": 1, "artifacts": []}
    data = parse_json(path.read_bytes(), source=str(path))
    if not isinstance(data, dict) or not isinstance(data.get("artifacts"), list):
        raise InvalidInput(f"{path}: expected an object with an 'artifacts' list")
    for index, entry in enumerate(data["artifacts"]):
        where = f"{path}: artifacts[{index}]"
        if not isinstance(entry, dict):
            raise InvalidInput(f"{where}: expected an object, got {_json_type(entry)}")
        if not isinstance(entry.get("job", ""), str):
            raise InvalidInput(f"{where}.job: expected a job id (a string)")
        file = entry.get("file")
        if not isinstance(file, str):
            raise InvalidInput(f"{where}.file: expected the name of a file in {out}")
        inside(out, file, where=f"{where}.file")
    return data


def _json_type(value: object) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string",
             list: "an array", type(None): "null"}  # fmt: skip
    return names.get(type(value), type(value).__name__)


def update_manifest(out: Path, artifacts: Sequence[Artifact], *, matrix: Path) -> Path:
    """Replace the entries of these jobs (removing files they no longer produce)."""
    data = read_manifest(out)
    new = {a.job: a for a in artifacts}
    kept = []
    for entry in data["artifacts"]:
        replacement = new.get(entry.get("job"))
        if replacement is None:
            kept.append(entry)
        elif entry["file"] != replacement.file:
            inside(
                out, entry["file"], where=f"{out / MANIFEST_NAME}: job {replacement.job!r}"
            ).unlink(missing_ok=True)
    entries = kept + [asdict(a) for a in artifacts]
    entries.sort(key=lambda e: str(e.get("job")))
    document = {"version": 1, "matrix": str(matrix), "artifacts": entries}
    path = out / MANIFEST_NAME
    atomic_write(path, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())
    return path
