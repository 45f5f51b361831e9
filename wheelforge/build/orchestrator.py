"""Run a matrix's jobs: isolate the source, build, repair, tag, compress; cache; manifest
in ``dist/``."""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from wheelforge import __version__
from wheelforge.build.backend import pep517_build
from wheelforge.build.cache import RAW, REPAIRED, BuildCache, cache_key, compile_key, repair_key
from wheelforge.build.compiler_cache import (
    CacheStats,
    compiler_cache_session,
    resolve_compiler_cache,
)
from wheelforge.build.logs import BuildFailed, StepInterrupted, interruptible_steps, run_logged
from wheelforge.build.manifest import Artifact, read_manifest, update_manifest
from wheelforge.build.reproducible import nvcc_has_objtemp, reproducible_flags
from wheelforge.build.sources import (
    ProjectFiles,
    normalize_sdist,
    project_files,
    sdist_digest,
    tree_changes,
    tree_snapshot,
    unpack_sdist,
)
from wheelforge.build.toolchains import (
    Toolchain,
    ToolchainUnavailable,
    resolve_python,
    resolve_toolchain,
)
from wheelforge.compress import compress_wheel
from wheelforge.errors import InvalidInput, WheelforgeError
from wheelforge.library_path import uses_build_tree
from wheelforge.matrix import Job, Matrix
from wheelforge.paths import inside, remove_tree
from wheelforge.publish.check import Finding, Severity, fallback_guard
from wheelforge.repair import check_size, repair_wheel
from wheelforge.smoke import TestResult
from wheelforge.tag import TagRequest, tag_wheel
from wheelforge.variants_file import write_variants_json

Progress = Callable[[str, str], None]
"""``progress(job_id, message)``: one line of live progress."""

Finished = Callable[[str, str], None]
"""``finished(job_id, status)``: a job ended (built, failed, skipped, ...)."""

SDIST_JOB = "sdist"  # the progress and manifest name of the sdist step


@dataclass(frozen=True)
class JobResult:
    job: Job
    # "built" (compiled and repaired) | "repaired" (not compiled: the unrepaired wheel was
    # cached or built by another job of the run) | "cached" | "failed" | "skipped" |
    # "unavailable" | "rejected" (built, but a fallback wheel with GPU content: check's
    # fallback guards) | "interrupted" (running when the run was interrupted)
    status: str
    seconds: float = 0.0
    wheel: Path | None = None
    log: Path | None = None
    error: str | None = None
    warning: str | None = None
    compiler_cache: CacheStats | None = None  # this run's compiles (None: none ran)
    test: TestResult | None = None  # the smoke test (None: no test-command, or --no-test)

    @property
    def ok(self) -> bool:
        return self.status in ("built", "repaired", "cached")


class BuildInterrupted(KeyboardInterrupt):
    """The run was interrupted (Ctrl-C); ``results`` says what became of every job."""

    def __init__(self, results: Sequence[JobResult]) -> None:
        super().__init__("interrupted")
        self.results = list(results)


@dataclass(frozen=True)
class BuildOptions:
    out: Path
    work_dir: Path
    cache_dir: Path | None  # None: no cache at all
    read_cache: bool = True
    workers: int = 1
    keep_going: bool = False
    builder: str = "build"  # "build" (PEP 517, here) | "cibuildwheel" (manylinux containers)
    skip_unavailable: bool = False  # build the rest when a job's toolchain cannot be had
    test: bool = True  # run each job's test-command on its wheel (wheelforge.smoke)


@dataclass(frozen=True)
class Resolved:
    """A job with what preflight found for it."""

    job: Job
    toolchain: Toolchain
    python: str
    python_version: str
    compiler_cache: str  # the tool: "sccache" | "ccache" | "none"


@dataclass(frozen=True)
class _Plan(Resolved):
    """A resolved job with its cache keys."""

    key: str  # the repair key: what determines the repaired wheel
    source_date_epoch: str
    compile_key: str  # what determines the unrepaired wheel


@dataclass(frozen=True)
class Source:
    """What every job builds from: a pristine copy made afresh per job."""

    mode: str  # "sdist" | "tree"
    digest: str  # of the content the jobs build from: the compile key's source part
    sdist: Path | None  # the release's sdist (mode "sdist")
    files: ProjectFiles  # the project's files (mode "tree" copies them per job)

    def copy_for(self, job_dir: Path) -> Path:
        """A fresh copy at a stable path (compiler caches key on it); return its root."""
        target = job_dir / "src"
        shutil.rmtree(target, ignore_errors=True)
        if self.sdist is not None:
            return unpack_sdist(self.sdist, target)
        return self.files.copy_to(target)


def _python_version(job: Job, python: str) -> str:
    if python == sys.executable:
        return f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise InvalidInput(f"variant {job.id} needs Python {job.python}: {python}: {err}") from None
    version = out.stdout.strip()
    if out.returncode != 0 or not version:
        said = (out.stderr.strip().splitlines() or [f"exit code {out.returncode}"])[-1]
        raise InvalidInput(
            f"variant {job.id} needs Python {job.python}: {python} does not run ({said})"
        )
    return version


def preflight(
    matrix: Matrix,
    jobs: Sequence[Job],
    toolchains_dir: Path,
    progress: Progress,
    *,
    builder: str = "build",
    skip_unavailable: bool = False,
    compiler_caches: bool = True,
) -> tuple[list[Resolved], list[JobResult]]:
    """Resolve every job's toolchain and interpreter before anything is built (with
    cibuildwheel the toolchain is the job's container image). Jobs whose toolchain
    cannot be had are an error, or with ``skip_unavailable`` results of their own."""
    if not matrix.project.is_dir():
        raise InvalidInput(f"{matrix.source}: project.path: {matrix.project} is not a directory")
    if not (matrix.project / "pyproject.toml").is_file():
        raise InvalidInput(f"{matrix.source}: project.path: {matrix.project} has no pyproject.toml")
    resolved = []
    unavailable = []
    for job in jobs:
        if builder == "cibuildwheel":
            from wheelforge.build.cibuildwheel import build_identifier, manylinux_image

            toolchain = Toolchain(job.toolchain, "", manylinux_image(job))
            python = version = build_identifier(job)  # the container's interpreter
            cache_kind = "none"  # host paths mean nothing inside the container
        else:
            try:
                announce = functools.partial(progress, job.id)
                toolchain = resolve_toolchain(job, toolchains_dir, announce)
                if job.cuda_components:
                    toolchain = _with_components(job, toolchain, toolchains_dir, announce)
            except ToolchainUnavailable as err:
                if not skip_unavailable:
                    raise
                unavailable.append(JobResult(job, "unavailable", error=err.message))
                continue
            python = resolve_python(job)
            version = _python_version(job, python)
            cache_kind = (
                resolve_compiler_cache(job.compiler_cache, warn=announce)
                if compiler_caches
                else "none"
            )
        resolved.append(Resolved(job, toolchain, python, version, cache_kind))
    return resolved, unavailable


def _with_components(
    job: Job, toolchain: Toolchain, toolchains_dir: Path, announce: Callable[[str], None]
) -> Toolchain:
    """``toolchain`` with the job's CUDA components fetched and on its search paths
    (ahead of the caller's own ``CPATH`` and the like)."""
    from wheelforge.build.components import provision_cuda_components

    try:
        found = provision_cuda_components(
            job.cuda_components, toolchain.version, toolchains_dir, announce
        )
    except InvalidInput as err:
        raise ToolchainUnavailable(f"variant {job.id}: {err.message}") from None
    paths = [
        (name, os.pathsep.join(filter(None, [value, os.environ.get(name)])))
        for name, value in found
    ]
    return dataclasses.replace(toolchain, env=(*toolchain.env, *paths))


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


def prepare_source(
    matrix: Matrix,
    options: BuildOptions,
    epoch: str,
    progress: Progress,
) -> Source:
    """The isolated source of this run. In sdist mode the sdist is built once from a copy
    of the project's files (or taken from the cache, keyed by those files)."""
    files = project_files(matrix.project)
    if not files.names:
        raise InvalidInput(f"{matrix.source}: project.path: {matrix.project} has no files")
    tree_digest = files.digest()
    if matrix.source_mode == "tree":
        return Source("tree", tree_digest, None, files)
    inputs = {"wheelforge": __version__, "tree": tree_digest, "source-date-epoch": epoch}
    key = cache_key(inputs)
    cache = BuildCache(options.cache_dir / "sdists") if options.cache_dir is not None else None
    staging = options.work_dir / "sdist"
    sdist = (
        cache.get(key, "*.tar.gz", warn=functools.partial(progress, SDIST_JOB))
        if (cache is not None and options.read_cache)
        else None
    )
    if sdist is not None:
        progress(SDIST_JOB, f"cached sdist ({sdist.name})")
    else:
        remove_tree(staging, root=options.work_dir)
        copy = files.copy_to(staging / "tree")
        log_path = options.work_dir / "logs" / f"{SDIST_JOB}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        progress(SDIST_JOB, f"building the sdist (log: {log_path})")
        env = {**os.environ, "SOURCE_DATE_EPOCH": epoch, "TMPDIR": str(_tmpdir(staging))}
        with open(log_path, "w", encoding="utf-8") as log:
            try:
                raw = pep517_build(
                    sys.executable, copy, staging / "raw", distribution="sdist", env=env,
                    log=log, log_path=log_path, heartbeat=functools.partial(progress, SDIST_JOB),
                )  # fmt: skip
            except BuildFailed as err:
                raise BuildFailed(
                    err.message,
                    hint="jobs build from the sdist; a project whose sdist cannot build can "
                    f'set source = "tree" in {matrix.source}\'s [project] table',
                ) from None
        sdist = normalize_sdist(raw, staging / "sdist" / raw.name, source_date_epoch=int(epoch))
        if cache is not None:
            cache.put(key, sdist)
    return Source("sdist", sdist_digest(sdist), sdist, files)


def _tmpdir(job_dir: Path) -> Path:
    """A temporary directory inside the job's directory: the backend's scratch files
    (build environments, compiler temporaries) go away with it."""
    tmp = (job_dir / "tmp").resolve()
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp


def _job_env(plan: _Plan, job_dir: Path) -> dict[str, str]:
    """The environment of a job's build and repair steps."""
    env = dict(os.environ)
    env.update(plan.toolchain.env)
    env.update(plan.job.env)
    env["SOURCE_DATE_EPOCH"] = plan.source_date_epoch
    env["TMPDIR"] = str(_tmpdir(job_dir))
    return env


def _compile(
    plan: _Plan,
    source: Path,
    job_dir: Path,
    log_path: Path,
    progress: Progress,
    *,
    builder: str = "build",
    cache_dir: Path | None = None,
) -> tuple[Path, CacheStats | None]:
    """Before-build steps and the build: the expensive part. Returns the unrepaired wheel
    (with cibuildwheel the repaired one: it repairs in its container) and the compiler
    cache's statistics."""
    job = plan.job
    heartbeat = functools.partial(progress, job.id)
    env = _job_env(plan, job_dir)
    # The job directory's path and nvcc's temporary names stay out of the output.
    nvcc = plan.toolchain.name == "nvcc" and nvcc_has_objtemp(plan.toolchain.path)
    env.update(reproducible_flags(job_dir, env, nvcc_objtemp=nvcc))
    # source-date-epoch = false: the build runs as a local `pip wheel .` would, without
    # the caller's value either; repair (auditwheel's zip dates) still takes it.
    if not job.source_date_epoch:
        env.pop("SOURCE_DATE_EPOCH", None)
    # scikit-build-core's build directory, kept with the job (other backends ignore it).
    build_dir = (job_dir / "build").resolve()
    env["SKBUILD_BUILD_DIR"] = str(build_dir)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    kind = plan.compiler_cache if cache_dir is not None else "none"
    with (
        open(log_path, "w", encoding="utf-8") as log,
        compiler_cache_session(
            kind, cache_dir or job_dir, job.id, base_dirs=[source.resolve(), build_dir],
            nvcc=Path(plan.toolchain.path) if plan.toolchain.name == "nvcc" else None,
        ) as compilers,
    ):  # fmt: skip
        env.update(compilers.env)  # last: it puts its compiler wrappers first on PATH
        if compilers.warning:
            progress(job.id, f"warning: {compilers.warning}")
        for index, step in enumerate(job.before_build):
            command = list(step) if isinstance(step, tuple) else ["sh", "-c", step]
            progress(job.id, f"before-build[{index}]: {' '.join(command)}")
            run_logged(
                command, env=env, log=log, what=f"before-build[{index}]", log_path=log_path,
                cwd=source, heartbeat=heartbeat,
            )  # fmt: skip
        if builder == "cibuildwheel":
            from wheelforge.build.cibuildwheel import manylinux_image, run_cibuildwheel

            progress(job.id, f"building with cibuildwheel in {manylinux_image(job)}")
            wheel = run_cibuildwheel(
                job, source, job_dir / "cibuildwheel", env=env, log=log,
                log_path=log_path,
                source_date_epoch=plan.source_date_epoch if job.source_date_epoch else None,
            )  # fmt: skip
            return wheel, None
        cached = f", compiler cache: {kind}" if kind != "none" else ""
        progress(
            job.id,
            f"building with {plan.toolchain.name} {plan.toolchain.version}{cached} "
            f"(log: {log_path})",
        )
        raw = pep517_build(
            plan.python, source, job_dir / "raw", distribution="wheel",
            config_settings=job.config_settings, env=env, log=log, log_path=log_path,
            heartbeat=heartbeat,
        )  # fmt: skip
    return raw, compilers.stats()


def _tree_roots(tree: Path | None) -> dict[str, Path]:
    """``repair-library-path``'s ``{build}`` and ``{source}``: in the directory of the job
    that compiled the unrepaired wheel (none for a wheel from the cache)."""
    if tree is None:
        return {}
    return {"build": (tree / "build").resolve(), "source": (tree / "src").resolve()}


def _repair(
    plan: _Plan, raw: Path, tree: Path | None, job_dir: Path, log_path: Path, progress: Progress
) -> Path:
    """auditwheel repair (through :func:`repair_wheel`) of the unrepaired wheel, logged
    at the end of the job's log; ``tree``: the directory of the job that compiled it.
    Returns the repaired wheel."""
    job = plan.job
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log:
        progress(job.id, "repairing" if job.repair else "not repaired (repair = false)")
        repaired, report = repair_wheel(
            raw,
            job_dir / "repaired",
            exclude=job.repair_exclude,
            isa_check=job.repair_isa_check,
            runtime=job.accelerator_runtime,
            cuda_version=plan.toolchain.version if plan.toolchain.name == "nvcc" else None,
            library_path=job.repair_library_path,
            library_roots=_tree_roots(tree),
            graft=job.repair,
            env=_job_env(plan, job_dir),
            log=log,
            log_path=log_path,
        )
    for library in report.libraries:
        if library.kind != "other":
            note = f" (adds Requires-Dist: {library.requirement})" if library.requirement else ""
            progress(job.id, f"{library.action} {library.kind} library {library.soname}{note}")
    for fix in report.runpaths:
        progress(job.id, fix.describe())
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


def _smoke_test(
    job: Job, wheel: Path, matrix: Matrix, options: BuildOptions, progress: Progress
) -> TestResult:
    """The job's test-command on its finished wheel, on the machine its label claims;
    a failure fails the job (its wheel does not reach ``out``)."""
    from wheelforge.smoke import SmokeTestFailed, TestOptions, TestSpec, job_python, run_smoke_test

    assert job.test_command is not None
    spec = TestSpec(job.test_command, matrix.project, job.test_requires)
    log_path = inside(options.work_dir, "logs", f"{job.id}-test.log", where=f"job {job.id!r}")
    result = run_smoke_test(
        wheel, spec, TestOptions(python=job_python(job)), log_path=log_path,
        progress=lambda _, message: progress(job.id, f"test: {message}"), name=job.id,
    )  # fmt: skip
    if result.status == "failed":
        last = f" (last output: {result.tail[-1]})" if result.tail else ""
        raise SmokeTestFailed(f"smoke test: {result.error}{last}")
    return result


class _TreeGuard:
    """The project tree's snapshot before the run; :meth:`verify` fails a job whose
    build (or anyone else) changed the tree meanwhile."""

    def __init__(self, project: Path, options: BuildOptions) -> None:
        self.project = project
        self.exclude = [p for p in (options.out, options.work_dir, options.cache_dir) if p]
        self.before = tree_snapshot(project, exclude=self.exclude)

    def verify(self, job: Job) -> None:
        changes = tree_changes(self.before, tree_snapshot(self.project, exclude=self.exclude))
        if changes:
            shown = ", ".join(changes[:5]) + (
                f" and {len(changes) - 5} more" if changes[5:] else ""
            )
            raise BuildFailed(
                f"the project tree {self.project} changed during the build ({shown}); "
                "builds must write only inside their own source copy, so nothing of this "
                "job is kept"
            )


@dataclass(frozen=True)
class BuildPlan:
    """What a run will build: the isolated source, and each job's toolchain and cache keys
    (jobs whose toolchain cannot be had, with ``skip_unavailable``, apart)."""

    source: Source
    plans: tuple[_Plan, ...]
    unavailable: tuple[JobResult, ...]


def plan_build(
    matrix: Matrix, jobs: Sequence[Job], options: BuildOptions, progress: Progress
) -> BuildPlan:
    """Resolve toolchains, prepare the isolated source (building the sdist unless it is
    cached) and compute every job's cache keys. Nothing is compiled."""
    # absolute: the toolchain paths go into the environment of builds run elsewhere
    toolchains_dir = ((options.cache_dir or options.work_dir) / "toolchains").absolute()
    resolved, unavailable = preflight(
        matrix, jobs, toolchains_dir, progress, builder=options.builder,
        skip_unavailable=options.skip_unavailable, compiler_caches=options.cache_dir is not None,
    )  # fmt: skip
    for result in unavailable:
        progress(result.job.id, f"unavailable: {result.error}")
    epoch = source_date_epoch(matrix.project)
    source = prepare_source(matrix, options, epoch, progress)
    plans = []
    for r in resolved:
        compiled = compile_key(
            r.job, source.digest, r.toolchain, r.python_version, epoch, builder=options.builder
        )
        plans.append(
            _Plan(r.job, r.toolchain, r.python, r.python_version, r.compiler_cache,
                  repair_key(r.job, compiled), epoch, compiled)
        )  # fmt: skip
    return BuildPlan(source, tuple(plans), tuple(unavailable))


def build_jobs(
    matrix: Matrix,
    jobs: Sequence[Job],
    options: BuildOptions,
    progress: Progress,
    finished: Finished | None = None,
) -> list[JobResult]:
    """Build, repair, tag and compress every job into ``options.out``. An interrupt
    (Ctrl-C) stops the running builds and raises :class:`BuildInterrupted` with every
    job's result; the jobs that finished keep their wheels and manifest entries."""
    read_manifest(options.out)  # a manifest the run would update must be sound first
    guard = _TreeGuard(matrix.project, options)
    ended = finished or (lambda job, status: None)
    try:
        build_plan = plan_build(matrix, jobs, options, progress)
    except KeyboardInterrupt:
        for job in jobs:
            ended(job.id, "skipped")
        raise BuildInterrupted([JobResult(job, "skipped") for job in jobs]) from None
    source, plans = build_plan.source, build_plan.plans
    raw_cache = repaired_cache = None
    if options.cache_dir is not None:
        raw_cache = BuildCache(options.cache_dir / RAW)
        repaired_cache = BuildCache(options.cache_dir / REPAIRED)
    options.out.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    lock = threading.Lock()
    artifacts: list[Artifact] = []
    if source.sdist is not None:
        sdist = options.out / source.sdist.name
        shutil.copyfile(source.sdist, sdist)
        artifacts.append(Artifact.of_sdist(SDIST_JOB, sdist, key=source.digest))
    # This run's wheels and failures, by key: a failed compile or repair is not tried
    # again by another job (the value: the log of the job that failed).
    raw_now: dict[str, tuple[Path, Path]] = {}  # compile key -> (wheel, its job's directory)
    repaired_now: dict[str, Path] = {}
    failed_compiles: dict[str, Path] = {}
    failed_repairs: dict[str, Path] = {}

    # Jobs with one compile key (the plain wheel and the null variant, say, or variants
    # that differ only in their repair options) compile once: the first in matrix order
    # builds, the others wait for it and take its wheel. Locks: a repair key's, then its
    # compile key's.
    compile_locks = {plan.compile_key: threading.Lock() for plan in plans}
    repair_locks = {plan.key: threading.Lock() for plan in plans}
    first_of: dict[str, str] = {}
    for plan in plans:
        first_of.setdefault(plan.compile_key, plan.job.id)
    first_done = {key: threading.Event() for key in first_of}

    def run(plan: _Plan) -> JobResult:
        first = first_of[plan.compile_key] == plan.job.id
        if not first:
            first_done[plan.compile_key].wait()
        started = time.monotonic()
        try:
            result = run_job(plan)
        except StepInterrupted:
            result = JobResult(plan.job, "interrupted", time.monotonic() - started)
        finally:
            if first:
                first_done[plan.compile_key].set()
        if result.status == "failed" and interrupted.is_set():  # e.g. a tool hit by Ctrl-C
            result = dataclasses.replace(result, status="interrupted")
        if result.status == "interrupted":
            progress(plan.job.id, "interrupted")
        ended(plan.job.id, result.status)
        return result

    def unrepaired(
        plan: _Plan, job_dir: Path, log_path: Path
    ) -> tuple[Path, Path | None, bool, CacheStats | None]:
        """The job's unrepaired wheel, the directory of the job that compiled it (None:
        from the cache), whether this job compiled it, and its compiles."""
        job = plan.job
        key = plan.compile_key
        with compile_locks[key]:
            if key in failed_compiles:
                raise BuildFailed(
                    f"not built again: the same build failed in this run; see "
                    f"{failed_compiles[key]}"
                )
            raw, tree = raw_now.get(key, (None, None))
            # A repair that searches the build tree needs the tree, which the cache lacks.
            from_cache = not uses_build_tree(job.repair_library_path)
            if raw is None and raw_cache is not None and options.read_cache and from_cache:
                raw = raw_cache.get(key, "*.whl", warn=functools.partial(progress, job.id))
            if raw is not None:
                progress(job.id, f"not compiled: the unrepaired {raw.name} was built before")
                return raw, tree, False, None
            try:
                copy = source.copy_for(job_dir)
                raw, compiles = _compile(
                    plan, copy, job_dir, log_path, progress,
                    builder=options.builder, cache_dir=options.cache_dir,
                )  # fmt: skip
                if compiles is not None:
                    progress(job.id, f"compiler cache: {compiles.summary()}")
                guard.verify(job)
            except WheelforgeError:
                failed_compiles[key] = log_path
                raise
            if raw_cache is not None and options.builder == "build":
                raw_cache.put(key, raw)
            raw_now[key] = (raw, job_dir)
            return raw, job_dir, True, compiles

    def repaired_wheel(
        plan: _Plan, job_dir: Path, log_path: Path
    ) -> tuple[Path, str, CacheStats | None]:
        """The job's repaired wheel, the job's status and its compiles."""
        job = plan.job
        with repair_locks[plan.key]:
            if plan.key in failed_repairs:
                raise BuildFailed(
                    f"not repaired again: the same repair failed in this run; see "
                    f"{failed_repairs[plan.key]}"
                )
            repaired = repaired_now.get(plan.key)
            if repaired is None and repaired_cache is not None and options.read_cache:
                warn = functools.partial(progress, job.id)
                repaired = repaired_cache.get(plan.key, "*.whl", warn=warn)
            if repaired is not None:
                progress(job.id, f"cached build ({repaired.name})")
                return repaired, "cached", None
            raw, tree, compiled, compiles = unrepaired(plan, job_dir, log_path)
            if not compiled:  # the job's log holds its repair alone
                log_path.parent.mkdir(parents=True, exist_ok=True)
                log_path.write_text(f"not compiled: repairing the unrepaired {raw}\n")
            try:
                # cibuildwheel's wheel comes repaired (its repair options are in the compile key).
                repaired = raw if options.builder == "cibuildwheel" else (
                    _repair(plan, raw, tree, job_dir, log_path, progress)
                )  # fmt: skip
            except WheelforgeError:
                failed_repairs[plan.key] = log_path
                raise
            if repaired_cache is not None:
                repaired_cache.put(plan.key, repaired)
            repaired_now[plan.key] = repaired
            return repaired, "built" if compiled else "repaired", compiles

    def run_job(plan: _Plan) -> JobResult:
        job = plan.job
        where = f"{matrix.source}: job {job.id!r}"
        job_dir = inside(options.work_dir, "jobs", job.id, where=where)
        log_path = inside(options.work_dir, "logs", f"{job.id}.log", where=where)
        if stop.is_set():
            return JobResult(job, "skipped")
        started = time.monotonic()
        remove_tree(job_dir, root=options.work_dir)  # a symlink is unlinked, not followed
        try:
            repaired, status, compiles = repaired_wheel(plan, job_dir, log_path)
            wheel = _finish(job, repaired, matrix, job_dir)
            limit = int(job.max_size_mb * 1024 * 1024)
            oversized = check_size(wheel, limit=limit, action=job.oversize)
            if oversized:
                progress(job.id, f"warning: {oversized}")
            tested = None
            if options.test and job.test_command is not None:
                tested = _smoke_test(job, wheel, matrix, options, progress)
                if tested.status == "skipped":
                    oversized = "; ".join(
                        filter(None, [oversized, f"test skipped: {tested.error}"])
                    )
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
        log = log_path if status != "cached" else None
        with lock:
            stats = compiles.to_json() if compiles is not None else None
            artifacts.append(
                Artifact.of(
                    job, target, key=plan.key, compile_key=plan.compile_key,
                    compiled=status == "built", log=log, compiler_cache=stats,
                )
            )  # fmt: skip
        return JobResult(
            job, status, seconds, target, log, warning=oversized, compiler_cache=compiles,
            test=tested,
        )  # fmt: skip

    # Device-code builds are the long poles: start them first, report in matrix order.
    # The sort is stable, so the first job of a compile key is still submitted before the
    # others that wait for it (the pool takes work in order: no deadlock at -j 1).
    order = sorted(plans, key=lambda plan: plan.job.toolchain == "host")
    interrupted = threading.Event()
    for result in build_plan.unavailable:
        ended(result.job.id, result.status)
    with interruptible_steps() as interrupt, ThreadPoolExecutor(max(1, options.workers)) as pool:
        futures = [pool.submit(run, plan) for plan in order]

        def stop_all() -> None:
            interrupted.set()
            stop.set()
            interrupt()

        _wait_or_interrupt(futures, stop_all)
        by_id = {future.result().job.id: future.result() for future in futures}
    by_id.update({result.job.id: result for result in build_plan.unavailable})
    results = [by_id[job.id] for job in jobs]
    update_manifest(options.out, artifacts, matrix=matrix.source)
    write_variants_json(options.out)
    guarded = [_guard_fallback(result, progress) for result in results]
    if interrupted.is_set():
        raise BuildInterrupted(guarded)
    return guarded


def _wait_or_interrupt(futures: Sequence[Future[JobResult]], interrupt: Callable[[], None]) -> None:
    """Wait for every job. On Ctrl-C (again too) ``interrupt()`` the run and wait on:
    running jobs stop, waiting ones skip, finished ones are kept."""
    while True:
        try:
            wait(futures)
            return
        except KeyboardInterrupt:
            interrupt()


def _guard_fallback(result: JobResult, progress: Progress) -> JobResult:
    """``check``'s fallback guards on a built plain wheel or null variant: GPU device
    code, GPU libraries or GPU runtime requirements there reject the job, which fails the
    run (the wheel stays in the output, where ``check`` reports it too)."""
    if not result.ok or result.wheel is None:
        return result
    try:
        findings = fallback_guard(result.wheel)
    except InvalidInput as err:  # a wheel the guards cannot read cannot pass them
        findings = [Finding(Severity.ERROR, result.wheel.name, "fallback-gpu", err.message)]
    errors = [f.message for f in findings if f.severity is Severity.ERROR]
    if not errors:
        return result
    for message in errors:
        progress(result.job.id, f"REJECTED: {message}")
    return dataclasses.replace(result, status="rejected", error="; ".join(errors))
