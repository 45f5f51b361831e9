"""saxpy's build: setuptools drives CMake, the way many GPU libraries do it.

``build_py`` first configures and builds the native library with CMake, in setuptools'
own temporary directory (``build/temp.<platform>-<python>/cmake``, inside the source
tree), and CMake writes ``libsaxpy_<backend>.so`` and ``_build_info.py`` into the
source package ``src/saxpy/``; then the ordinary ``build_py`` copies the package, the
library included (package data), to ``build/lib`` for the wheel.

The backend is chosen by environment variables, as such projects usually do:

- ``SAXPY_BACKEND``: ``cpu`` (default) or ``cuda``;
- ``SAXPY_CPU_LEVEL``: ``v1`` (default) or ``v3`` (``-march=x86-64-v3``);
- ``CMAKE_CUDA_ARCHITECTURES``: passed on to CMake when set (CMake also reads ``CUDAARCHS``);
- ``CMAKE_BUILD_PARALLEL_LEVEL``: parallel compile jobs (CMake reads it; default: all CPUs).

cuBLAS is found by CMake's FindCUDAToolkit through the standard hints
(``CMAKE_PREFIX_PATH``, ``CPATH``), never through a path written here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
PACKAGE_DIR = HERE / "src" / "saxpy"

_CHOICES = {"SAXPY_BACKEND": ("cpu", "cuda"), "SAXPY_CPU_LEVEL": ("v1", "v3")}


def _setting(name: str) -> str:
    choices = _CHOICES[name]
    value = os.environ.get(name, "").strip() or choices[0]
    if value not in choices:
        raise SystemExit(f"saxpy: {name} must be one of {', '.join(choices)}, not {value!r}")
    return value


class CMakeBuildPy(build_py):
    """Build the native library with CMake, then copy the package as usual."""

    def run(self) -> None:
        cmake = shutil.which("cmake")
        if cmake is None:
            raise SystemExit("saxpy: building needs CMake >= 3.25 on PATH (apt-get install cmake)")
        build_temp = Path(self.get_finalized_command("build").build_temp) / "cmake"
        build_temp.mkdir(parents=True, exist_ok=True)
        defines = {
            "SAXPY_BACKEND": _setting("SAXPY_BACKEND"),
            "SAXPY_CPU_LEVEL": _setting("SAXPY_CPU_LEVEL"),
            "CMAKE_BUILD_TYPE": "Release",
        }
        if os.environ.get("CMAKE_CUDA_ARCHITECTURES"):
            defines["CMAKE_CUDA_ARCHITECTURES"] = os.environ["CMAKE_CUDA_ARCHITECTURES"]
        configure = [cmake, "-S", str(HERE), "-B", str(build_temp)]
        configure += [f"-D{key}={value}" for key, value in defines.items()]
        subprocess.run(configure, check=True)
        build = [cmake, "--build", str(build_temp)]
        if not os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL"):
            build += ["--parallel", str(os.cpu_count() or 1)]
        subprocess.run(build, check=True)
        super().run()


class BinaryDistribution(Distribution):
    """The package carries a native library: a platform wheel whose files install into
    platlib (``Root-Is-Purelib: false``), although there is no setuptools Extension."""

    def has_ext_modules(self) -> bool:
        return True


class PlatformWheel(bdist_wheel):
    """One wheel for every Python 3: the library is loaded with ctypes and uses no
    CPython API, so the tag is py3-none-<platform>, not cp311-cp311-<platform>."""

    def get_tag(self) -> tuple[str, str, str]:
        _, _, platform = super().get_tag()
        return "py3", "none", platform


setup(
    distclass=BinaryDistribution,
    cmdclass={"build_py": CMakeBuildPy, "bdist_wheel": PlatformWheel},
)
