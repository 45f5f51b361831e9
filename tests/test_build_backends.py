"""``-j 2`` is safe with every kind of build backend, not only the two bundled examples
(setuptools driving CMake: test_build_saxpy; scikit-build-core native: test_build_e2e).

Three tiny real projects, each a C shared library in two flavours, baseline x86-64
(``libtiny_v1.so``: the plain wheel and the null variant, one build) and x86-64-v3
(``libtiny_v3.so``: ``-march=x86-64-v3 -Wl,-z,x86-64-v3``), each built with its real
backend in its own isolated build environment:

- scikit-build-core's setuptools plugin (``scikit_build_core.setuptools.build_meta``,
  ``setup(cmake_source_dir=".")``): CMake writes the library into the package folder of
  the source tree, as real projects do, and installs it; setuptools packages every
  ``*.so`` it finds there. The level is a CMake define passed as a config setting
  (``cmake.define.TINY_LEVEL``).
- meson-python (``mesonpy``, with meson and ninja from PyPI): a meson option selects the
  level, passed as a config setting (``setup-args=-Dlevel=v3``).
- hatchling with a custom build hook (``hatch_build.py``) that runs the C compiler and
  writes the library into the package folder; hatchling ignores config settings, so the
  level comes from the job's environment (``TINY_LEVEL``).

Built in one shared tree, the baseline wheel of the first and last would pick up the
other job's library; built in place, the project tree would change. Each wheel must hold
exactly its own library, the tree must stay untouched, and a second run on the same
cache must report every job cached."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from wheelforge.build.sources import tree_snapshot

pytestmark = pytest.mark.slow

TINY_C = """\
int tiny_add(int a, int b) { return a + b; }
"""

INIT_PY = """\
import ctypes, glob, os

_lib = ctypes.CDLL(glob.glob(os.path.join(os.path.dirname(__file__), "libtiny_*.so"))[0])
add = _lib.tiny_add
"""

# -- scikit-build-core's setuptools plugin ---------------------------------------------

SKB_SETUPTOOLS = {
    "pyproject.toml": """\
        [build-system]
        # Config settings reach the setuptools plugin since scikit-build-core 1.1 (before,
        # only SKBUILD_CMAKE_DEFINE in the environment did).
        requires = ["scikit-build-core[setuptools]>=1.1"]
        build-backend = "scikit_build_core.setuptools.build_meta"

        [project]
        name = "tinyskb"
        version = "1.0"

        [tool.setuptools]
        packages = ["tinyskb"]

        [tool.setuptools.package-data]
        tinyskb = ["*.so"]  # whatever library the tree holds is packaged
        """,
    "setup.py": """\
        from setuptools import setup

        setup(cmake_source_dir=".")
        """,
    "MANIFEST.in": "include CMakeLists.txt\nrecursive-include src *.c\n",
    "CMakeLists.txt": """\
        cmake_minimum_required(VERSION 3.15...3.31)
        project(tinyskb LANGUAGES C)
        set(TINY_LEVEL "v1" CACHE STRING "x86-64 level: v1 or v3")
        if(NOT TINY_LEVEL MATCHES "^(v1|v3)$")
          message(FATAL_ERROR "TINY_LEVEL must be v1 or v3, not '${TINY_LEVEL}'")
        endif()
        set(lib tiny_${TINY_LEVEL})
        add_library(${lib} SHARED src/tiny.c)
        if(TINY_LEVEL STREQUAL "v3")
          target_compile_options(${lib} PRIVATE -march=x86-64-v3)
          target_link_options(${lib} PRIVATE -Wl,-z,x86-64-v3)
        endif()
        # Like real projects: the library is built into the source tree's package folder.
        set_target_properties(${lib} PROPERTIES
          LIBRARY_OUTPUT_DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}/tinyskb")
        install(TARGETS ${lib} LIBRARY DESTINATION tinyskb)
        """,
    "src/tiny.c": TINY_C,
    "tinyskb/__init__.py": INIT_PY,
}

SKB_SETUPTOOLS_JOBS = """\
[[variants]]
id = "plain"
kind = "plain"

[[variants]]
id = "cpu"
kind = "null"

[[variants]]
id = "cpu-x86-64-v3"
label = "x86_64_v3"
properties = ["x86_64 :: level :: v3"]
config-settings = { "cmake.define.TINY_LEVEL" = "v3" }
repair-isa-check = false
"""

# -- meson-python --------------------------------------------------------------------

MESON_PYTHON = {
    "pyproject.toml": """\
        [build-system]
        requires = ["meson-python>=0.16", "meson>=1.1", "ninja"]
        build-backend = "mesonpy"

        [project]
        name = "tinymeson"
        version = "1.0"
        """,
    "meson.build": """\
        project('tinymeson', 'c', version: '1.0')
        py = import('python').find_installation(pure: false)
        level = get_option('level')
        if level == 'v3' and get_option('extra') != 'yes'
          error('the v3 job passes a second setup-args argument, -Dextra=yes')
        endif
        c_args = level == 'v3' ? ['-march=x86-64-v3'] : []
        link_args = level == 'v3' ? ['-Wl,-z,x86-64-v3'] : []
        shared_library('tiny_' + level, 'src/tiny.c', c_args: c_args, link_args: link_args,
          install: true, install_dir: py.get_install_dir() / 'tinymeson')
        py.install_sources('tinymeson/__init__.py', subdir: 'tinymeson')
        """,
    "meson.options": "option('level', type: 'combo', choices: ['v1', 'v3'], value: 'v1')\n"
    "option('extra', type: 'combo', choices: ['no', 'yes'], value: 'no')\n",
    "src/tiny.c": TINY_C,
    "tinymeson/__init__.py": INIT_PY,
}

MESON_PYTHON_JOBS = """\
[[variants]]
id = "plain"
kind = "plain"

[[variants]]
id = "cpu"
kind = "null"

[[variants]]
id = "cpu-x86-64-v3"
label = "x86_64_v3"
properties = ["x86_64 :: level :: v3"]
config-settings = { "setup-args" = ["-Dlevel=v3", "-Dextra=yes"] }  # two arguments
repair-isa-check = false
"""

# -- hatchling with a build hook -------------------------------------------------------

HATCHLING = {
    "pyproject.toml": """\
        [build-system]
        requires = ["hatchling>=1.24"]
        build-backend = "hatchling.build"

        [project]
        name = "tinyhatch"
        version = "1.0"

        [tool.hatch.build.targets.wheel.hooks.custom]  # hatch_build.py
        """,
    "hatch_build.py": """\
        import os
        import subprocess

        from hatchling.builders.hooks.plugin.interface import BuildHookInterface


        class CompileHook(BuildHookInterface):
            def initialize(self, version, build_data):
                level = os.environ.get("TINY_LEVEL", "v1")
                flags = ["-march=x86-64-v3", "-Wl,-z,x86-64-v3"] if level == "v3" else []
                # Into the package folder of the source tree; hatchling packages it.
                out = os.path.join(self.root, "tinyhatch", f"libtiny_{level}.so")
                source = os.path.join(self.root, "src", "tiny.c")
                cc = os.environ.get("CC", "cc")
                subprocess.run([cc, "-O2", "-shared", "-fPIC", *flags, source, "-o", out],
                               check=True)
                build_data["pure_python"] = False
                build_data["tag"] = "py3-none-linux_x86_64"
        """,
    "src/tiny.c": TINY_C,
    "tinyhatch/__init__.py": INIT_PY,
}

HATCHLING_JOBS = """\
[[variants]]
id = "plain"
kind = "plain"
env = { TINY_LEVEL = "v1" }

[[variants]]
id = "cpu"
kind = "null"
env = { TINY_LEVEL = "v1" }

[[variants]]
id = "cpu-x86-64-v3"
label = "x86_64_v3"
properties = ["x86_64 :: level :: v3"]
env = { TINY_LEVEL = "v3" }
repair-isa-check = false
"""


@dataclass(frozen=True)
class Backend:
    package: str
    files: dict[str, str]
    jobs: str
    git: bool = False  # a git work tree with everything committed


BACKENDS = {
    "skbuild-setuptools": Backend("tinyskb", SKB_SETUPTOOLS, SKB_SETUPTOOLS_JOBS),
    # meson dist needs git: a meson project is always a git checkout.
    "meson-python": Backend("tinymeson", MESON_PYTHON, MESON_PYTHON_JOBS, git=True),
    "hatchling-hook": Backend("tinyhatch", HATCHLING, HATCHLING_JOBS),
}

JOBS = ("plain", "cpu", "cpu-x86-64-v3")


def make_project(base: Path, backend: Backend) -> Path:
    project = base / f"{backend.package}-src"
    for name, text in backend.files.items():
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    if backend.git:
        git = ["git", "-c", "user.email=t@t", "-c", "user.name=t", "-c", "commit.gpgsign=false"]
        for step in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "tiny"]):
            subprocess.run([*git, *step], cwd=project, check=True)
    return project


def write_matrix(base: Path, project: Path, backend: Backend) -> Path:
    matrix = base / "matrix.toml"
    header = f'[project]\npath = "{project}"\npython = ["3"]\n\n'
    matrix.write_text(header + backend.jobs)
    return matrix


def json_build(base: Path, matrix: Path, *extra: str) -> dict[str, str]:
    """``wheelforge build --json`` as a subprocess: job -> status."""
    command = [sys.executable, "-m", "wheelforge", "build", "--matrix", str(matrix),
               "--out", str(base / "dist"), "--cache-dir", str(base / "cache"),
               "--work-dir", str(base / "work"), "--json", *extra]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    logs = base / "work" / "logs"
    tails = (
        {p.name: p.read_text()[-3000:] for p in sorted(logs.glob("*.log"))} if logs.is_dir() else {}
    )
    assert result.returncode == 0, (result.stderr, tails)
    return {r["job"]: r["status"] for r in json.loads(result.stdout)}


@dataclass
class Built:
    backend: Backend
    base: Path
    project: Path
    tree_before: dict[str, tuple[int, ...]]
    first: dict[str, str]
    second: dict[str, str]

    def wheel(self, label: str | None) -> Path:
        for path in (self.base / "dist").glob("*.whl"):
            parts = path.stem.split("-")
            if (parts[5] if len(parts) == 6 else None) == label:
                return path
        raise AssertionError(f"no wheel labelled {label} in {self.base / 'dist'}")


@pytest.fixture(scope="module", params=list(BACKENDS))
def built(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Built]:
    backend = BACKENDS[request.param]
    base = tmp_path_factory.mktemp(request.param)
    project = make_project(base, backend)
    matrix = write_matrix(base, project, backend)
    before = tree_snapshot(project)
    first = json_build(base, matrix, "-j", "2")
    second = json_build(base, matrix, "-j", "2")
    yield Built(backend, base, project, before, first, second)


def libraries(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as zf:
        return {
            name: zf.read(name)
            for name in zf.namelist()
            if name.endswith(".so") or ".so." in name or "libtiny" in name
        }


def isa_notes(data: bytes, tmp_path: Path) -> str:
    path = tmp_path / "lib.so"
    path.write_bytes(data)
    return subprocess.run(
        ["readelf", "-n", str(path)], capture_output=True, text=True, check=True
    ).stdout


def test_every_job_built_at_j2(built: Built) -> None:
    # The plain wheel and the null variant share a build: one compiles, one is cached.
    assert built.first == {"plain": "built", "cpu": "cached", "cpu-x86-64-v3": "built"}
    names = {p.name for p in (built.base / "dist").iterdir()}
    package = built.backend.package
    assert f"{package}-1.0-variants.json" in names
    assert f"{package}-1.0.tar.gz" in names  # the sdist every job built from


@pytest.mark.parametrize(("label", "level"), [(None, "v1"), ("null", "v1"), ("x86_64_v3", "v3")])
def test_each_wheel_holds_exactly_its_own_library(
    built: Built, label: str | None, level: str, tmp_path: Path
) -> None:
    package = built.backend.package
    found = libraries(built.wheel(label))
    assert sorted(found) == [f"{package}/libtiny_{level}.so"], (label, sorted(found))
    notes = isa_notes(found[f"{package}/libtiny_{level}.so"], tmp_path)
    if level == "v3":
        assert "x86 ISA needed: x86-64-v3" in notes, notes
    else:
        assert "x86-64-v3" not in notes, notes


def test_the_project_tree_is_untouched(built: Built) -> None:
    assert tree_snapshot(built.project) == built.tree_before


def test_a_second_run_is_all_cached(built: Built) -> None:
    assert built.second == dict.fromkeys(JOBS, "cached")


def test_a_meson_python_copy_is_a_git_repository_of_exactly_the_project_files(
    tmp_path: Path,
) -> None:
    """``meson dist`` (meson-python's sdist) runs only in a git or Mercurial checkout and
    archives what is committed: the copy the sdist is built from is a repository of its
    own with every copied file committed, even one its own ignore rules would leave out
    and one whose name is a pattern. Other backends' copies stay plain files."""
    from wheelforge.build.sources import project_files

    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text('[build-system]\nbuild-backend = "mesonpy"\n')
    for name in ("meson.build", "gen.c", "a[1].c", ".gitignore"):
        (project / name).write_text("gen.c\n" if name == ".gitignore" else "x\n")
    files = project_files(project)  # not a git work tree: every file
    copy = files.copy_to(tmp_path / "copy")

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=copy, capture_output=True, text=True, check=True
        ).stdout

    assert sorted(git("ls-files", "-z").split("\0")[:-1]) == list(files.names)
    assert git("status", "--porcelain", "--ignored") == ""
    assert "wheelforge source copy" in git("log", "--format=%s")
    (project / "pyproject.toml").write_text('[build-system]\nbuild-backend = "hatchling.build"\n')
    assert not (project_files(project).copy_to(tmp_path / "plain") / ".git").exists()
