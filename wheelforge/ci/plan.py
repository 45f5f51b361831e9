"""The plan a GitHub Actions workflow fans out: one matrix entry per job, with what the
runner needs (its image, the cache key of its toolchain); a reduced plan for pull
requests; the cibuildwheel environment of each job."""

from __future__ import annotations

import re
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


# GitHub-hosted runner labels: a pull request's matrix may pick only these (or the
# --allow-runner labels), never a self-hosted runner that would run its code.
GITHUB_HOSTED = re.compile(
    r"(ubuntu|windows|macos)-(latest|[0-9]+(\.[0-9]+)?)(-arm|-arm64|-large|-xlarge|-intel)?"
)


def github_matrix(
    jobs: Sequence[Job], *, pull_request: bool = False, allowed_runners: Sequence[str] = ()
) -> dict[str, Any]:
    """``{"include": [...]}`` for ``strategy.matrix``. For a pull request (whose matrix
    file is the pull request's own) a job's runner must be a GitHub-hosted label or one
    of ``allowed_runners``."""
    chosen = reduced(jobs) if pull_request else list(jobs)
    if pull_request:
        for job in chosen:
            if not (GITHUB_HOSTED.fullmatch(job.runner) or job.runner in allowed_runners):
                raise InvalidInput(
                    f"job {job.id}: runner {job.runner[:100]!r} is not a GitHub-hosted runner; "
                    "a pull request's matrix may not choose it (it could run the pull "
                    "request's code on a self-hosted machine)",
                    hint=f"if the runner is meant for pull requests, pass --allow-runner "
                    f"{job.runner[:100]} to 'wheelforge plan' in the workflow",
                )
    return {"include": [github_entry(job) for job in chosen]}


def cibuildwheel_plan(jobs: Sequence[Job]) -> dict[str, dict[str, str]]:
    return {job.id: cibuildwheel_env(job) for job in jobs}
