"""CUDA library components from PyPI: the real cuBLAS wheel, found by CMake's
FindCUDAToolkit with only the environment provision_cuda_components returns.

The first run downloads nvidia-cublas (about 400 MB; 570 MB installed) and the small
cuda-toolkit meta-package; pip's cache makes later runs cheap.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from wheelforge.build.components import component_package, provision_cuda_components
from wheelforge.errors import InvalidInput

_NVCC = shutil.which("nvcc") or (
    "/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None
)

_CMAKELISTS = """\
cmake_minimum_required(VERSION 3.25)
project(uses_cublas LANGUAGES CUDA)
find_package(CUDAToolkit REQUIRED)
add_library(uses_cublas SHARED uses_cublas.cu)
set_target_properties(uses_cublas PROPERTIES CUDA_ARCHITECTURES 75-real)
target_link_libraries(uses_cublas PRIVATE CUDA::cublas CUDA::cudart)
"""

_SOURCE = """\
#include <cublas_v2.h>
extern "C" int uses_cublas_version(void) {
  cublasHandle_t handle;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) return -1;
  int version = 0;
  cublasGetVersion(handle, &version);
  cublasDestroy(handle);
  return version;
}
"""


def test_unknown_component_is_named(tmp_path: Path) -> None:
    with pytest.raises(
        InvalidInput, match=r"unknown CUDA component 'cublass': expected one of cccl, cublas, "
    ):
        provision_cuda_components(["cublas", "cublass"], "13.0", tmp_path, print)
    with pytest.raises(InvalidInput, match=r"CUDA version 'thirteen' is not a version"):
        provision_cuda_components(["cublas"], "thirteen", tmp_path, print)
    assert list(tmp_path.iterdir()) == []


def test_package_names_follow_the_cuda_major() -> None:
    assert component_package("cublas", "13.0") == "nvidia-cublas"
    assert component_package("cublas", "12.8") == "nvidia-cublas-cu12"
    assert component_package("cudart", "13.5") == "nvidia-cuda-runtime"


def test_a_cuda_version_without_releases_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(
        InvalidInput,
        match=r"CUDA components cublas: cannot find CUDA 99.0's versions: "
        r"pip download cuda-toolkit==99\.0\.\* failed \(exit code",
    ):
        provision_cuda_components(["cublas"], "99.0", tmp_path, print)
    assert list((tmp_path / "cuda-components-99.0").iterdir()) == []


@pytest.fixture
def toolchains(tmp_path: Path) -> Iterator[Path]:
    """A toolchains directory, removed afterwards (cuBLAS takes 570 MB installed)."""
    yield tmp_path / "tc"
    shutil.rmtree(tmp_path / "tc", ignore_errors=True)


@pytest.mark.slow
@pytest.mark.skipif(_NVCC is None or shutil.which("cmake") is None, reason="needs nvcc and cmake")
def test_cublas_is_provisioned_and_links(tmp_path: Path, toolchains: Path) -> None:
    said: list[str] = []
    env = dict(provision_cuda_components(["cublas"], "13.0", toolchains, said.append))
    assert len(said) == 1 and "nvidia-cublas==13.1." in said[0], said
    assert set(env) == {"CMAKE_PREFIX_PATH", "CPATH", "LIBRARY_PATH"}
    lib = toolchains / "cuda-components-13.0" / "cublas" / "nvidia" / "cu13" / "lib"
    assert env["LIBRARY_PATH"] == str(lib)
    assert (lib / "libcublas.so").resolve() == (lib / "libcublas.so.13").resolve()
    assert os.readlink(lib / "libcublasLt.so") == "libcublasLt.so.13"
    # Installed once: a second call downloads nothing.
    assert dict(provision_cuda_components(["cublas"], "13.0", toolchains, said.append)) == env
    assert len(said) == 1

    project = tmp_path / "project"
    project.mkdir()
    (project / "CMakeLists.txt").write_text(_CMAKELISTS)
    (project / "uses_cublas.cu").write_text(_SOURCE)
    # Only the returned variables, on top of a bare environment (no CUDA hints of ours).
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(tmp_path))}
    base["CUDACXX"] = str(_NVCC)
    build = project / "build"
    for command in (
        ["cmake", "-S", str(project), "-B", str(build)],
        ["cmake", "--build", str(build)],
    ):
        result = subprocess.run(
            command, env=base | env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
    dynamic = subprocess.run(
        ["readelf", "-d", str(build / "libuses_cublas.so")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Shared library: [libcublas.so.13]" in dynamic

    # And without them, CMake does not find cuBLAS in the machine's toolkit.
    toolkits = [Path("/usr/local/cuda"), Path(os.environ.get("CUDA_HOME") or "/usr/local/cuda")]
    if any((toolkit / "include" / "cublas_v2.h").exists() for toolkit in toolkits):
        return
    shutil.rmtree(build)
    result = subprocess.run(
        ["cmake", "-S", str(project), "-B", str(build)],
        env=base,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0 and "CUDA::cublas" in result.stderr, result.stderr
