"""Reproducible builds: the flags every job gets, and two clean builds of an unstripped
CUDA library in different work directories that ``wheelforge diff`` finds identical."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from wheelforge.build.reproducible import (
    MAPPED_PREFIX,
    nvcc_has_objtemp,
    prefix_maps,
    reproducible_flags,
)

ROOT = Path(__file__).resolve().parent.parent
NVCC = shutil.which("nvcc")


def test_flags_go_before_the_callers_own(tmp_path: Path) -> None:
    job = tmp_path / "jobs" / "cuda13.0"
    flags = reproducible_flags(job, {"CFLAGS": "-O3", "CUDAFLAGS": "-lineinfo"}, nvcc_objtemp=True)
    mapping = f"-ffile-prefix-map={job}={MAPPED_PREFIX}"
    assert flags["CFLAGS"] == f"{mapping} -O3"  # later flags win: the caller's maps too
    assert flags["CXXFLAGS"] == flags["HIPFLAGS"] == mapping
    assert flags["CUDAFLAGS"] == f"-Xcompiler={mapping} -objtemp -lineinfo"
    assert "-objtemp" not in reproducible_flags(job, {})["CUDAFLAGS"]


def test_a_symlinked_job_dir_maps_both_paths_and_whitespace_maps_none(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    assert prefix_maps(link) == (
        f"-ffile-prefix-map={link}={MAPPED_PREFIX}",
        f"-ffile-prefix-map={real}={MAPPED_PREFIX}",
    )
    assert prefix_maps(tmp_path / "with space") == ()
    assert reproducible_flags(tmp_path / "with space", {"CFLAGS": "-O2"}) == {}


@pytest.mark.skipif(NVCC is None, reason="needs nvcc")
def test_this_nvcc_has_objtemp() -> None:
    assert NVCC is not None
    assert nvcc_has_objtemp(NVCC)
    assert not nvcc_has_objtemp("/nonexistent/nvcc")


_MATRIX = """
[project]
path = "{project}"
python = ["3"]

[[variants]]
id = "cuda-debug"
label = "cu130"
properties = ["nvidia :: cuda_version_lower_bound :: 13.0"]
toolchain = "nvcc"
toolchain-version = "13.0"
compiler-cache = "none"
compression = "zstd"
# Unstripped, with debug info: without wheelforge's flags this library holds nvcc's
# tmpxft_<pid> names and the job's temporary directory.
config-settings = {{ "cmake.define.VECADD_BACKEND" = "cuda", "cmake.define.CMAKE_CUDA_ARCHITECTURES" = "75-real", "cmake.define.VECADD_CUDA_RUNTIME" = "Shared", "install.strip" = "false", "cmake.build-type" = "RelWithDebInfo" }}
"""


@pytest.mark.slow
@pytest.mark.skipif(NVCC is None, reason="needs nvcc")
def test_two_clean_cuda_builds_in_different_work_dirs_are_identical(
    tmp_path: Path, cli: Callable[..., tuple[int, str, str]]
) -> None:
    matrix = tmp_path / "matrix.toml"
    matrix.write_text(_MATRIX.format(project=ROOT / "examples" / "vecadd"))
    for run in ("a", "b"):
        code, _, err = cli(
            "build", "--matrix", matrix, "--no-cache", "-j", "1",
            "--out", tmp_path / run / "dist", "--cache-dir", tmp_path / run / "cache",
            "--work-dir", tmp_path / run / f"work-{run}",
        )  # fmt: skip
        assert code == 0, err
    [wheel] = (tmp_path / "a" / "dist").glob("*.whl")
    code, out, _ = cli("diff", tmp_path / "a" / "dist", tmp_path / "b" / "dist")
    assert (code, out) == (0, f"{wheel.name}: identical\n1 pair(s): 1 identical, 0 differ\n")
