"""The build cache: a repaired wheel per build key (the isolated source's content, the
job's build settings, toolchain and Python versions), so an unchanged variant is never
compiled twice; and the sdist per project tree."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from wheelforge import __version__
from wheelforge.build.toolchains import Toolchain
from wheelforge.fsutil import atomic_path, atomic_write, file_sha256
from wheelforge.matrix import Job

_RECORD = "sha256.json"


def default_cache_dir() -> Path:
    if os.environ.get("WHEELFORGE_CACHE_DIR"):
        return Path(os.environ["WHEELFORGE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "wheelforge"


def build_key(
    job: Job, source: str, toolchain: Toolchain, python_version: str, source_date_epoch: str
) -> str:
    """What determines the repaired wheel. Label, properties, requirements and
    compression are applied after the cache, so the plain wheel and the null variant
    share one compile, and relabelling a variant rebuilds nothing."""
    inputs = {
        "wheelforge": __version__,
        "source": source,
        "config-settings": job.config_settings,
        "env": job.env,
        "before-build": job.before_build,
        "cuda-components": job.cuda_components,
        "repair": [
            job.repair,
            job.repair_exclude,
            job.repair_isa_check,
            job.accelerator_runtime,
            job.repair_library_path,
        ],
        "toolchain": [toolchain.name, toolchain.version],
        "python": python_version,
        "source-date-epoch": source_date_epoch,
    }
    return cache_key(inputs)


def cache_key(inputs: Mapping[str, object]) -> str:
    """The sha256 of a cache entry's inputs (JSON, keys sorted)."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


class BuildCache:
    """One file per key (a repaired wheel, an sdist), with its sha256 beside it: an entry
    whose file no longer matches is discarded, with a warning, and built again."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _entry(self, key: str) -> Path:
        return self.root / key[:2] / key

    def get(self, key: str, pattern: str, *, warn: Callable[[str], None]) -> Path | None:
        entry = self._entry(key)
        found = sorted(entry.glob(pattern)) if entry.is_dir() else []
        if len(found) != 1:
            return None
        try:
            recorded = json.loads((entry / _RECORD).read_text(encoding="utf-8"))
            expected = recorded[found[0].name]
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            expected = None
        if expected != file_sha256(found[0]):
            warn(f"warning: discarding the cache entry {found[0]}: it no longer matches its sha256")
            shutil.rmtree(entry, ignore_errors=True)
            return None
        return found[0]

    def put(self, key: str, artifact: Path) -> None:
        entry = self._entry(key)
        shutil.rmtree(entry, ignore_errors=True)
        entry.mkdir(parents=True, exist_ok=True)
        with atomic_path(entry / artifact.name) as tmp:
            shutil.copyfile(artifact, tmp)
        record = {artifact.name: file_sha256(entry / artifact.name)}
        atomic_write(entry / _RECORD, json.dumps(record).encode())
