"""Hermetic builds: every job builds from its own pristine copy of the source (the
release's sdist by default), the project tree is never written, and the cache holds only
what a clean build produced.

The project here is a small real setuptools project that does what real GPU projects do:
its build writes the backend's output into the package folder of the source tree
(``tiny/_lib_<backend>.txt``), and setuptools packages whatever it finds there. Built in
one shared tree, a fallback wheel would pick up the CUDA job's file."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from wheelforge.build.logs import error_excerpt
from wheelforge.build.sources import tree_snapshot
from wheelforge.cli import main

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent

SETUP_PY = """\
import glob, os
from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class build_backend(build_py):
    def run(self):
        backend = os.environ.get("TINY_BACKEND", "cpu")
        # Like CMake's LIBRARY_OUTPUT_DIRECTORY pointing into the package: into the tree.
        with open(os.path.join(HERE, "tiny", f"_lib_{backend}.txt"), "w") as f:
            f.write(backend)
        escape = os.environ.get("TINY_ESCAPE")
        if escape:  # a build that writes outside its own directory, by absolute path
            with open(escape, "w") as f:
                f.write("written by the build")
        if os.environ.get("TINY_NEEDS_EXTRA"):
            open(os.path.join(HERE, "extra", "data.txt")).read()
        super().run()


setup(cmdclass={"build_py": build_backend})
"""

PYPROJECT = """\
[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "tiny"
version = "1.0"

[tool.setuptools]
packages = ["tiny"]

[tool.setuptools.package-data]
tiny = ["_*.txt"]
"""

MATRIX = """\
[project]
path = "{project}"
{source}

[[variants]]
id = "plain"
kind = "plain"
env = {{ TINY_BACKEND = "cpu"{env} }}

[[variants]]
id = "cpu"
kind = "null"
env = {{ TINY_BACKEND = "cpu"{env} }}

[[variants]]
id = "cuda"
label = "cu130"
properties = ["nvidia :: cuda_version_lower_bound :: 13.0"]
env = {{ TINY_BACKEND = "cuda"{env} }}
{cuda_extra}
"""


def make_project(base: Path) -> Path:
    project = base / "tiny-src"
    (project / "tiny").mkdir(parents=True)
    (project / "extra").mkdir()
    (project / "tiny" / "__init__.py").write_text("")
    (project / "setup.py").write_text(SETUP_PY)
    (project / "pyproject.toml").write_text(PYPROJECT)
    (project / "README.txt").write_text("tiny\n")
    (project / "extra" / "data.txt").write_text("not in the sdist\n")  # not package data
    return project


def write_matrix(
    base: Path, project: Path, *, source: str = "", env: str = "", cuda_extra: str = ""
) -> Path:
    path = base / "matrix.toml"
    path.write_text(MATRIX.format(project=project, source=source, env=env, cuda_extra=cuda_extra))
    return path


def build(base: Path, matrix: Path, *extra: str) -> int:
    return main(
        [
            "build", "--matrix", str(matrix), "--out", str(base / "dist"),
            "--cache-dir", str(base / "cache"), "--work-dir", str(base / "work"), *extra,
        ]
    )  # fmt: skip


def members(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return {n for n in zf.namelist() if n.startswith("tiny/")}


def by_label(dist: Path) -> dict[str | None, Path]:
    result: dict[str | None, Path] = {}
    for wheel in dist.glob("*.whl"):
        parts = wheel.stem.split("-")
        result[parts[5] if len(parts) == 6 else None] = wheel
    return result


def statuses(out: str) -> dict[str, str]:
    return {r["job"]: r["status"] for r in json.loads(out)}


def test_jobs_build_from_their_own_copy_and_the_tree_is_never_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = make_project(tmp_path)
    before = tree_snapshot(project)
    assert build(tmp_path, write_matrix(tmp_path, project), "-j", "2", "--json") == 0
    assert statuses(capsys.readouterr().out) == {"plain": "built", "cpu": "cached", "cuda": "built"}
    wheels = by_label(tmp_path / "dist")
    # Each wheel holds its own backend's output only: no CUDA file in the fallbacks.
    assert members(wheels[None]) == {"tiny/__init__.py", "tiny/_lib_cpu.txt"}
    assert members(wheels["null"]) == {"tiny/__init__.py", "tiny/_lib_cpu.txt"}
    assert members(wheels["cu130"]) == {"tiny/__init__.py", "tiny/_lib_cuda.txt"}
    assert tree_snapshot(project) == before  # not a byte, not a time stamp
    # The release's sdist is in dist/ and the manifest, and check takes it as the sdist.
    sdist = tmp_path / "dist" / "tiny-1.0.tar.gz"
    manifest = json.loads((tmp_path / "dist" / "wheelforge-manifest.json").read_text())
    entry = next(a for a in manifest["artifacts"] if a["job"] == "sdist")
    assert entry["kind"] == "sdist" and entry["file"] == sdist.name and entry["log"] is None
    assert main(["check", str(tmp_path / "dist")]) == 0
    # The sdist is byte-reproducible whatever the backend stamps into it.
    first = sdist.read_bytes()
    capsys.readouterr()
    assert build(tmp_path, write_matrix(tmp_path, project), "--no-cache", "--json") == 0
    assert sdist.read_bytes() == first


def test_a_cached_rerun_builds_nothing_and_a_source_change_rebuilds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = make_project(tmp_path)
    matrix = write_matrix(tmp_path, project)
    assert build(tmp_path, matrix, "--json") == 0
    capsys.readouterr()
    assert build(tmp_path, matrix, "--json") == 0
    out = capsys.readouterr()
    assert statuses(out.out) == {"plain": "cached", "cpu": "cached", "cuda": "cached"}
    assert "[sdist] cached sdist (tiny-1.0.tar.gz)" in out.err
    (project / "tiny" / "__init__.py").write_text("VERSION = 2\n")
    assert build(tmp_path, matrix, "--json") == 0
    assert statuses(capsys.readouterr().out) == {"plain": "built", "cpu": "cached", "cuda": "built"}


def test_a_build_that_writes_into_the_tree_fails_and_is_not_cached(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = make_project(tmp_path)
    escape = project / "tiny" / "escaped.txt"
    matrix = write_matrix(tmp_path, project, env=f', TINY_ESCAPE = "{escape}"')
    assert build(tmp_path, matrix, "--only", "plain") == 1
    err = capsys.readouterr().err
    assert re.search(
        r"error: job plain: the project tree .*tiny-src changed during the build "
        r"\(added: tiny/escaped.txt\); builds must write only inside their own source copy",
        err,
    ), err
    assert not list((tmp_path / "cache").rglob("*.whl"))  # nothing of that build was kept
    assert not list((tmp_path / "dist").glob("*.whl"))


def test_the_cache_discards_an_entry_whose_wheel_changed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = make_project(tmp_path)
    matrix = write_matrix(tmp_path, project)
    assert build(tmp_path, matrix, "--only", "cuda") == 0
    (raw,) = (tmp_path / "cache" / "raw").rglob("*.whl")
    (repaired,) = (tmp_path / "cache" / "repaired").rglob("*.whl")
    with open(repaired, "ab") as f:
        f.write(b"tampered")
    capsys.readouterr()
    # The repaired wheel is discarded; the unrepaired one is repaired again, not compiled.
    assert build(tmp_path, matrix, "--only", "cuda", "--json") == 0
    out = capsys.readouterr()
    assert statuses(out.out) == {"cuda": "repaired"}
    assert f"warning: discarding the cache entry {repaired}: it no longer matches its sha256" in (
        out.err
    )
    # Both discarded: compiled again.
    for entry in (raw, repaired):
        with open(entry, "ab") as f:
            f.write(b"tampered")
    assert build(tmp_path, matrix, "--only", "cuda", "--json") == 0
    out = capsys.readouterr()
    assert statuses(out.out) == {"cuda": "built"}
    for entry in (raw, repaired):
        assert f"warning: discarding the cache entry {entry}: it no longer matches" in out.err
        with zipfile.ZipFile(entry) as zf:
            assert zf.testzip() is None


def test_an_incomplete_sdist_fails_and_source_tree_builds_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = make_project(tmp_path)
    needs_extra = ', TINY_NEEDS_EXTRA = "1"'
    matrix = write_matrix(tmp_path, project, env=needs_extra)
    assert build(tmp_path, matrix, "--only", "plain") == 1
    err = capsys.readouterr().err
    # The summary quotes the cause from the log: the file the sdist lacks.
    assert re.search(
        r"error: job plain: build failed \(exit code 1\): error: \[Errno 2\] No such file or "
        r"directory: '.*/work/jobs/plain/src/tiny-1.0/extra/data.txt'; "
        r"see .*plain.log",
        err,
    ), err
    tree = write_matrix(tmp_path, project, source='source = "tree"', env=needs_extra)
    shutil.rmtree(tmp_path / "dist")
    assert build(tmp_path, tree, "--only", "plain") == 0
    assert not (tmp_path / "dist" / "tiny-1.0.tar.gz").exists()


def test_before_build_runs_in_the_job_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path)
    before = tree_snapshot(project)
    steps = (
        'before-build = ["echo waiting; sleep 1; echo from the shell > tiny/_shell.txt", '
        '["cp", "README.txt", "tiny/_argv.txt"]]'
    )
    monkeypatch.setenv("WHEELFORGE_HEARTBEAT", "0.2")
    assert build(tmp_path, write_matrix(tmp_path, project, cuda_extra=steps), "--only", "cuda") == 0
    err = capsys.readouterr().err
    assert members(by_label(tmp_path / "dist")["cu130"]) == {
        "tiny/__init__.py", "tiny/_lib_cuda.txt", "tiny/_shell.txt", "tiny/_argv.txt",
    }  # fmt: skip
    assert tree_snapshot(project) == before
    # A long step reports while it runs: elapsed time and the log's last new line.
    assert re.search(r"\[1/1\] cuda: before-build\[0\]: 0s \| waiting$", err, re.M), err
    log = (tmp_path / "work" / "logs" / "cuda.log").read_text()
    assert "$ cp README.txt tiny/_argv.txt" in log


def test_a_failing_before_build_step_is_quoted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = make_project(tmp_path)
    steps = "before-build = [\"echo 'fatal error: gmp.h: No such file' >&2; exit 3\"]"
    matrix = write_matrix(tmp_path, project, cuda_extra=steps)
    assert build(tmp_path, matrix, "--only", "cuda") == 1
    err = capsys.readouterr().err
    assert re.search(
        r"error: job cuda: before-build\[0\] failed \(exit code 3\): fatal error: gmp.h: "
        r"No such file; see .*cuda.log",
        err,
    ), err


def test_skip_unavailable_builds_the_rest_and_says_how_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path)
    monkeypatch.setenv("PATH", str(BIN))  # no hipcc here
    monkeypatch.setenv("CXX", shutil.which("g++") or "g++")
    matrix = write_matrix(tmp_path, project, cuda_extra='toolchain = "hipcc"')
    assert build(tmp_path, matrix) == 2  # by default a missing toolchain is an error
    assert capsys.readouterr().err.strip() == (
        "error: variant cuda needs hipcc: not found on PATH "
        "(on Debian: apt-get install hipcc libamdhip64-dev)"
    )
    assert not (tmp_path / "dist").exists()
    assert build(tmp_path, matrix, "--skip-unavailable", "--json") == 0
    out = capsys.readouterr()
    assert statuses(out.out) == {"plain": "built", "cpu": "cached", "cuda": "unavailable"}
    assert (
        "warning: job cuda skipped: variant cuda needs hipcc: not found on PATH "
        "(on Debian: apt-get install hipcc libamdhip64-dev)"
    ) in out.err
    assert set(by_label(tmp_path / "dist")) == {None, "null"}
    variants = json.loads((tmp_path / "dist" / "tiny-1.0-variants.json").read_text())
    assert set(variants["variants"]) == {"null"}


def test_an_interpreter_that_does_not_run_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path)
    shims = tmp_path / "shims"
    shims.mkdir()
    wanted = "3.10" if sys.version_info[:2] != (3, 10) else "3.12"
    shim = shims / f"python{wanted}"  # a pyenv shim for an interpreter not installed
    shim.write_text(f"#!/bin/sh\necho 'pyenv: python{wanted}: command not found' >&2\nexit 127\n")
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shims}{os.pathsep}{os.environ['PATH']}")
    matrix = tmp_path / "m.toml"
    matrix.write_text(
        f'[project]\npath = "{project}"\npython = ["{wanted}"]\n\n[[variants]]\nkind = "plain"\n'
    )
    assert build(tmp_path, matrix) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: variant plain needs Python {wanted}: {shim} does not run "
        f"(pyenv: python{wanted}: command not found)"
    )


def test_a_matrix_path_that_is_a_directory_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert build(tmp_path, tmp_path) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path}: is a directory; expected a matrix file (*.toml)"
    )


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        (
            "-- Configuring\nCMake Error at CMakeLists.txt:12 (message):\n  BACKEND must be cpu\n\n"
            "-- Configuring incomplete\nTraceback (most recent call last):\nsubprocess.CalledProcessError: x\n",
            "CMake Error at CMakeLists.txt:12 (message): BACKEND must be cpu",
        ),
        (
            '[1/3] Building CUDA object k.cu.o\n/src/k.cu(7): error: identifier "fo" is undefined\n',
            '/src/k.cu(7): error: identifier "fo" is undefined',
        ),
        (
            "x.c:1:10: fatal error: cuda_runtime.h: No such file or directory\n",
            "x.c:1:10: fatal error: cuda_runtime.h: No such file or directory",
        ),
        (
            "/usr/bin/ld: k.o: in function `f':\nk.c:(.text+0x5): undefined reference to `cublasCreate_v2'\n",
            "k.c:(.text+0x5): undefined reference to `cublasCreate_v2'",
        ),
        (
            "/usr/bin/ld: cannot find -lcublas: No such file\n",
            "/usr/bin/ld: cannot find -lcublas: No such file",
        ),
        ("all good\n-Werror=format is on\n", None),
    ],
    ids=["cmake", "nvcc", "gcc-fatal", "undefined-reference", "ld-cannot-find", "no-error"],
)
def test_error_excerpt(log: str, expected: str | None) -> None:
    assert error_excerpt(log) == expected


def test_git_projects_copy_tracked_and_unignored_files_only(tmp_path: Path) -> None:
    from wheelforge.build.sources import project_files

    project = make_project(tmp_path)
    (project / ".gitignore").write_text("ignored.txt\n")
    (project / "ignored.txt").write_text("x")
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=project, check=True)
    subprocess.run([*git, "add", "setup.py"], cwd=project, check=True)
    names = project_files(project).names
    assert "setup.py" in names and "README.txt" in names  # tracked, and untracked-unignored
    assert "ignored.txt" not in names and not any(n.startswith(".git/") for n in names)
    # A project inside an ignored folder of the work tree: git lists nothing, so the
    # files are found by walking the folder.
    (project / ".gitignore").write_text("vendored/\n")
    nested = project / "vendored" / "lib"
    shutil.copytree(project / "tiny", nested / "tiny")
    (nested / "pyproject.toml").write_text(PYPROJECT)
    assert project_files(nested).names == ("pyproject.toml", "tiny/__init__.py")


def test_a_failed_build_is_not_compiled_again_by_a_job_sharing_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = make_project(tmp_path)
    matrix = write_matrix(tmp_path, project, env=', TINY_NEEDS_EXTRA = "1"')
    assert build(tmp_path, matrix, "--keep-going", "-j", "2", "--json") == 1
    out = capsys.readouterr()
    assert statuses(out.out) == {"plain": "failed", "cpu": "failed", "cuda": "failed"}
    log = tmp_path / "work" / "logs" / "plain.log"
    assert (
        f"error: job cpu: not built again: the same build failed in this run; see {log}"
    ) in out.err
    assert not (tmp_path / "work" / "logs" / "cpu.log").exists()


def test_a_failing_sdist_build_names_its_cause_and_the_tree_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = make_project(tmp_path)
    (project / "setup.py").write_text("raise SystemExit('error: cannot make an sdist here')\n")
    matrix = write_matrix(tmp_path, project)
    assert build(tmp_path, matrix) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert re.fullmatch(
        r"error: sdist build failed \(exit code 1\): error: cannot make an sdist here; see "
        r".*/work/logs/sdist.log",
        err[-2],
    ), err
    assert err[-1] == (
        f'hint: jobs build from the sdist; a project whose sdist cannot build can set source = "tree" '
        f"in {matrix}'s [project] table"
    )
    assert not (tmp_path / "dist").exists() or not list((tmp_path / "dist").iterdir())


def test_normalized_sdists_depend_on_content_alone(tmp_path: Path) -> None:
    """Two sdists with the same files, written in other orders, times and owners (as
    backends and clocks differ), repack to the same bytes, with sorted members."""
    import io
    import tarfile

    from wheelforge.build.sources import normalize_sdist, sdist_digest

    files = {"p-1/pyproject.toml": b"[project]\n", "p-1/a.c": b"int a;\n", "p-1/z.h": b"z\n"}

    def sdist(name: str, order: list[str], mtime: int, owner: str) -> Path:
        path = tmp_path / name
        with tarfile.open(path, "w:gz") as archive:
            for member in order:
                info = tarfile.TarInfo(member)
                info.size, info.mtime, info.uname = len(files[member]), mtime, owner
                archive.addfile(info, io.BytesIO(files[member]))
        return path

    first = sdist("a.tar.gz", sorted(files), 1_700_000_000, "alice")
    second = sdist("b.tar.gz", sorted(files, reverse=True), 1_800_000_000, "bob")
    assert first.read_bytes() != second.read_bytes()
    assert sdist_digest(first) == sdist_digest(second)
    one = normalize_sdist(first, tmp_path / "out1" / "p-1.tar.gz", source_date_epoch=1_000)
    two = normalize_sdist(second, tmp_path / "out2" / "p-1.tar.gz", source_date_epoch=1_000)
    assert one.read_bytes() == two.read_bytes()
    with tarfile.open(one) as archive:
        assert archive.getnames() == sorted(files)
        assert {m.mtime for m in archive} == {1_000} and {m.uname for m in archive} == {""}
    assert sdist_digest(one) == sdist_digest(first)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("2", 2.0), ("inf", 30.0), ("nan", 30.0), ("-5", 0.1), ("1e9", 3600.0), ("soon", 30.0)],
)
def test_the_heartbeat_interval_is_bounded(
    value: str, seconds: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wheelforge.build.logs import heartbeat_interval

    monkeypatch.setenv("WHEELFORGE_HEARTBEAT", value)
    assert heartbeat_interval() == seconds
