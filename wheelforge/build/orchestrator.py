"""Run a matrix's jobs: build, repair, tag, compress; cache; manifest in ``dist/``."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from wheelforge.build.backend import pep517_wheel
from wheelforge.build.cache import BuildCache, build_key, source_digest
from wheelforge.build.manifest import Artifact, update_manifest
from wheelforge.build.toolchains import Toolchain, resolve_python, resolve_toolchain
from wheelforge.compress import compress_wheel
from wheelforge.errors import InvalidInput, WheelforgeError
from wheelforge.matrix import Job, Matrix
from wheelforge.paths import inside, remove_tree
from wheelforge.repair import check_size, repair_wheel
from wheelforge.tag import TagRequest, tag_wheel
from wheelforge.variants_file import write_variants_json

Progress = Callable[[str, str], None]
"""``progress(job_id, message)``: one line of live progress."""


@dataclass(frozen=True)
class JobResult:
    job: Job
    status: str  # "built" | "cached" | "failed" | "skipped"
    seconds: float = 0.0
    wheel: Path | None = None
    log: Path | None = None
    error: str | None = None
    warning: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("built", "cached")


@dataclass(frozen=True)
class BuildOptions:
    out: Path
    work_dir: Path
    cache_dir: Path | None  # None: no cache at all
    read_cache: bool = True
    workers: int = 1
    keep_going: bool = False
    builder: str = "build"  # "build" (PEP 517, here) | "cibuildwheel" (manylinux containers)


@dataclass(frozen=True)
class _Plan:
    job: Job
    toolchain: Toolchain
    python: str
    python_version: str
    key: str
    source_date_epoch: str


def _python_version(python: str) -> str:
    if python == sys.executable:
        return f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    out = subprocess.run(
        [python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def preflight(
    matrix: Matrix,
    jobs: Sequence[Job],
    toolchains_dir: Path,
    progress: Progress,
    *,
    builder: str = "build",
) -> list[_Plan]:
    """Resolve every job's toolchain and interpreter before anything is built (with
    cibuildwheel the toolchain is the job's container image)."""
    if not matrix.project.is_dir():
        raise InvalidInput(f"{matrix.source}: project.path: {matrix.project} is not a directory")
    if not (matrix.project / "pyproject.toml").is_file():
        raise InvalidInput(f"{matrix.source}: project.path: {matrix.project} has no pyproject.toml")
    source = source_digest(matrix.project)
    epoch = source_date_epoch(matrix.project)
    plans = []
    for job in jobs:
        if builder == "cibuildwheel":
            from wheelforge.build.cibuildwheel import build_identifier, manylinux_image

            toolchain = Toolchain(job.toolchain, "", manylinux_image(job))
            python = version = build_identifier(job)  # the container's interpreter
        else:
            toolchain = resolve_toolchain(job, toolchains_dir, functools.partial(progress, job.id))
            python = resolve_python(job)
            version = _python_version(python)
        key = build_key(job, source, toolchain, version, epoch)
        plans.append(_Plan(job, toolchain, python, version, key, epoch))
    return plans


_EPOCH_1980 = "315532800"


def source_date_epoch(project: Path) -> str:
    """``SOURCE_DATE_EPOCH`` for builds: the caller's, else the time of the last commit
    that touched the project, else 1980."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return os.environ["SOURCE_DATE_EPOCH"]
    try:
        result = subprocess.run(
            ["git", "log", "-1", "--format=%ct", "--", "."],  # the project's last change
            cwd=project,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:  # no git
        return _EPOCH_1980
    stamp = result.stdout.strip()
    return stamp if result.returncode == 0 and stamp.isdigit() else _EPOCH_1980


def _compile(
    plan: _Plan,
    matrix: Matrix,
    job_dir: Path,
    log_path: Path,
    progress: Progress,
    builder: str = "build",
) -> Path:
    """Build and repair: the expensive part, the one the cache keeps."""
    job = plan.job
    env = dict(os.environ)
    env.update(plan.toolchain.env)
    env.update(job.env)
    env["SOURCE_DATE_EPOCH"] = plan.source_date_epoch
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        if builder == "cibuildwheel":
            from wheelforge.build.cibuildwheel import manylinux_image, run_cibuildwheel

            progress(job.id, f"building with cibuildwheel in {manylinux_image(job)}")
            return run_cibuildwheel(
                job, matrix.project, job_dir / "cibuildwheel", env=env, log=log,
                log_path=log_path, source_date_epoch=plan.source_date_epoch,
            )  # fmt: skip
        progress(
            job.id,
            f"building with {plan.toolchain.name} {plan.toolchain.version} (log: {log_path})",
        )
        raw = pep517_wheel(
            plan.python,
            matrix.project,
            job_dir / "raw",
            config_settings=job.config_settings,
            build_dir=job_dir / "build",
            env=env,
            log=log,
            log_path=log_path,
        )
        progress(job.id, "repairing")
        repaired, report = repair_wheel(
            raw,
            job_dir / "repaired",
            exclude=job.repair_exclude,
            isa_check=job.repair_isa_check,
            runtime=job.accelerator_runtime,
            cuda_version=plan.toolchain.version if plan.toolchain.name == "nvcc" else None,
            env=env,
            log=log,
            log_path=log_path,
        )
        for library in report.libraries:
            if library.kind != "other":
                note = (
                    f" (adds Requires-Dist: {library.requirement})" if library.requirement else ""
                )
                progress(job.id, f"{library.action} {library.kind} library {library.soname}{note}")
        return repaired


def _finish(job: Job, repaired: Path, matrix: Matrix, job_dir: Path) -> Path:
    """Tag and compress a repaired wheel (cheap: done on every run)."""
    wheel = repaired
    if job.kind != "plain":
        request = TagRequest(
            properties=job.properties,
            label=job.label,
            config=matrix.config,
            requires_dist=job.requires_dist,
        )
        wheel = tag_wheel(wheel, job_dir / "tagged", request)
    if job.compression != "deflate":
        wheel = compress_wheel(wheel, job_dir / "final" / wheel.name, job.compression).output
    return wheel


def build_jobs(
    matrix: Matrix,
    jobs: Sequence[Job],
    options: BuildOptions,
    progress: Progress,
) -> list[JobResult]:
    toolchains_dir = (options.cache_dir or options.work_dir) / "toolchains"
    plans = preflight(matrix, jobs, toolchains_dir, progress, builder=options.builder)
    cache = BuildCache(options.cache_dir) if options.cache_dir is not None else None
    options.out.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    lock = threading.Lock()
    artifacts: list[Artifact] = []
    built_now: set[str] = set()

    key_locks = {plan.key: threading.Lock() for plan in plans}

    def run(plan: _Plan) -> JobResult:
        job = plan.job
        where = f"{matrix.source}: job {job.id!r}"
        job_dir = inside(options.work_dir, "jobs", job.id, where=where)
        log_path = inside(options.work_dir, "logs", f"{job.id}.log", where=where)
        if stop.is_set():
            return JobResult(job, "skipped")
        started = time.monotonic()
        remove_tree(job_dir, root=options.work_dir)  # a symlink is unlinked, not followed
        try:
            # Jobs with one build key (the plain wheel and the null variant, say) compile once.
            with key_locks[plan.key]:
                reuse = options.read_cache or plan.key in built_now
                repaired = cache.get(plan.key) if cache is not None and reuse else None
                status = "cached" if repaired is not None else "built"
                if repaired is None:
                    repaired = _compile(plan, matrix, job_dir, log_path, progress, options.builder)
                    if cache is not None:
                        cache.put(plan.key, repaired)
                    built_now.add(plan.key)
                else:
                    progress(job.id, f"cached build ({repaired.name})")
            wheel = _finish(job, repaired, matrix, job_dir)
            limit = int(job.max_size_mb * 1024 * 1024)
            oversized = check_size(wheel, limit=limit, action=job.oversize)
            if oversized:
                progress(job.id, f"warning: {oversized}")
            target = options.out / wheel.name
            shutil.copyfile(wheel, target)
        except WheelforgeError as err:
            if not options.keep_going:
                stop.set()
            progress(job.id, f"FAILED: {err.message}")
            return JobResult(
                job, "failed", time.monotonic() - started, log=log_path, error=err.message
            )
        seconds = time.monotonic() - started
        progress(job.id, f"done in {seconds:.1f}s: {target.name}")
        log = log_path if status == "built" else None
        with lock:
            artifacts.append(Artifact.of(job, target, key=plan.key, log=log))
        return JobResult(job, status, seconds, target, log, warning=oversized)

    # Device-code builds are the long poles: start them first, report in matrix order.
    order = sorted(plans, key=lambda plan: plan.job.toolchain == "host")
    with ThreadPoolExecutor(max_workers=max(1, options.workers)) as pool:
        by_id = {result.job.id: result for result in pool.map(run, order)}
    results = [by_id[plan.job.id] for plan in plans]
    update_manifest(options.out, artifacts, matrix=matrix.source)
    write_variants_json(options.out)
    return results
