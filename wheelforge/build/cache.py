"""The build cache: a repaired wheel per build key (source tree, the job's build settings,
toolchain and Python versions), so an unchanged variant is never compiled twice."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from wheelforge import __version__
from wheelforge.build.toolchains import Toolchain
from wheelforge.fsutil import atomic_path
from wheelforge.matrix import Job

_SKIPPED_DIRS = {
    ".git",
    ".hg",
    ".venv",
    "venv",
    "build",
    "dist",
    "__pycache__",
    ".wheelforge",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
}


def default_cache_dir() -> Path:
    if os.environ.get("WHEELFORGE_CACHE_DIR"):
        return Path(os.environ["WHEELFORGE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "wheelforge"


def source_digest(project: Path) -> str:
    """sha256 over every source file's relative path and content (build outputs skipped)."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(project):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS and not d.endswith(".egg-info"))
        for name in sorted(files):
            path = Path(root) / name
            digest.update(path.relative_to(project).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


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
        "repair": [job.repair_exclude, job.repair_isa_check, job.accelerator_runtime],
        "toolchain": [toolchain.name, toolchain.version],
        "python": python_version,
        "source-date-epoch": source_date_epoch,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


class BuildCache:
    def __init__(self, root: Path) -> None:
        self.root = root

    def get(self, key: str) -> Path | None:
        entry = self.root / key[:2] / key
        wheels = sorted(entry.glob("*.whl")) if entry.is_dir() else []
        return wheels[0] if len(wheels) == 1 else None

    def put(self, key: str, wheel: Path) -> None:
        entry = self.root / key[:2] / key
        entry.mkdir(parents=True, exist_ok=True)
        for old in entry.glob("*.whl"):
            old.unlink()
        with atomic_path(entry / wheel.name) as tmp:
            shutil.copyfile(wheel, tmp)
