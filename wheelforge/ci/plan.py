"""The plan a GitHub Actions workflow fans out: one matrix entry per job, with what the
runner needs (its image, the cache key of its toolchain); a reduced plan for pull
requests; the cibuildwheel environment of each job."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wheelforge.build.cibuildwheel import cibuildwheel_env, manylinux_image
from wheelforge.errors import InvalidInput
from wheelforge.matrix import Job


def reduced(jobs: Sequence[Job]) -> list[Job]:
    """One job of each kind and toolchain (the plain wheel, the null variant, one CPU
    variant, one CUDA, one ROCm): what a pull request builds."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for job in jobs:
        key = (job.kind, job.toolchain)
        if key not in seen:
            seen.add(key)
            kept.append(job)
    return kept


def github_entry(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "label": job.label or "plain",
        "toolchain": job.toolchain,
        "toolchain-version": job.toolchain_version or "",
        "python": job.python,
        "runner": job.runner,
        "image": _image(job),
        # Toolchains fetched from PyPI and compiler caches survive between runs per
        # toolchain version; the variant's own files are keyed by its id.
        "cache-key": f"{job.toolchain}-{job.toolchain_version or 'system'}",
    }


def _image(job: Job) -> str:
    try:
        return manylinux_image(job)
    except InvalidInput:
        return ""  # this job cannot build with cibuildwheel; `build` does not need one


def github_matrix(jobs: Sequence[Job], *, pull_request: bool = False) -> dict[str, Any]:
    """``{"include": [...]}`` for ``strategy.matrix``."""
    chosen = reduced(jobs) if pull_request else list(jobs)
    return {"include": [github_entry(job) for job in chosen]}


def cibuildwheel_plan(jobs: Sequence[Job]) -> dict[str, dict[str, str]]:
    return {job.id: cibuildwheel_env(job) for job in jobs}
