"""The build cache: the unrepaired wheel per compile key (the isolated source's content,
the job's build settings, toolchain and Python versions) under ``raw/``, the repaired wheel
per repair key (the compile key and the repair options) under ``repaired/``, so an
unchanged variant is never compiled twice and changing only how a variant is repaired
compiles nothing; and the sdist per project tree under ``sdists/``."""

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

RAW = "raw"  # the cache's folder of unrepaired wheels, by compile key
REPAIRED = "repaired"  # the cache's folder of repaired wheels, by repair key


def default_cache_dir() -> Path:
    if os.environ.get("WHEELFORGE_CACHE_DIR"):
        return Path(os.environ["WHEELFORGE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "wheelforge"


def compile_key(
    job: Job,
    source: str,
    toolchain: Toolchain,
    python_version: str,
    source_date_epoch: str,
    *,
    builder: str = "build",
) -> str:
    """What determines the unrepaired wheel. Label, properties, requirements and
    compression are applied after the cache, so the plain wheel and the null variant
    share one compile, and relabelling a variant rebuilds nothing. cibuildwheel repairs
    inside its container, so there the repair options are part of the compile."""
    inputs: dict[str, object] = {
        "wheelforge": __version__,
        "source": source,
        "config-settings": job.config_settings,
        "env": job.env,
        "before-build": job.before_build,
        "cuda-components": job.cuda_components,
        "toolchain": [toolchain.name, toolchain.version],
        "python": python_version,
        "source-date-epoch": source_date_epoch,  # repair's zip dates take it in any case
        "build-sees-source-date-epoch": job.source_date_epoch,
    }
    if builder != "build":
        inputs["builder"] = builder
        inputs["repair"] = repair_inputs(job)
    return cache_key(inputs)


def repair_inputs(job: Job) -> dict[str, object]:
    """The job's repair options: what, with the unrepaired wheel, determines the repaired one."""
    return {
        "repair": job.repair,
        "exclude": job.repair_exclude,
        "isa-check": job.repair_isa_check,
        "accelerator-runtime": job.accelerator_runtime,
        "library-path": job.repair_library_path,
    }


def repair_key(job: Job, compiled: str) -> str:
    """What determines the repaired wheel: the compile key and the repair options."""
    return cache_key({"compile": compiled, "repair": repair_inputs(job)})


def cache_key(inputs: Mapping[str, object]) -> str:
    """The sha256 of a cache entry's inputs (JSON, keys sorted)."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


class BuildCache:
    """One file per key (an unrepaired or a repaired wheel, an sdist), with its sha256
    beside it: an entry whose file no longer matches is discarded, with a warning, and
    built again."""

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
