"""CUDA library components (cuBLAS, cuFFT, …) from PyPI, for builds against a toolkit
that lacks them.

The machine's CUDA toolkit (or one provisioned by :mod:`wheelforge.build.toolchains`)
has nvcc and the runtime but not necessarily the math libraries. NVIDIA publishes each
of them as a wheel (``nvidia-cublas`` for CUDA 13, ``nvidia-cublas-cu12`` for CUDA 12)
with headers and versioned libraries under ``nvidia/cu13/`` (CUDA 13) or
``nvidia/<library>/`` (CUDA 12). :func:`provision_cuda_components` installs the
component wheels that match a CUDA version into a cache directory, adds the
unversioned ``lib<x>.so`` links the wheels lack, and returns the environment that lets
CMake's ``FindCUDAToolkit`` (``CUDA::cublas``) and plain compiler drivers find them.

Which component version matches which CUDA release is NVIDIA's ``cuda-toolkit``
meta-package's business: ``cuda-toolkit==13.0.*`` pins ``nvidia-cublas==13.1.1.3.*``
under its ``cublas`` extra (cuBLAS has its own version numbers, so
``nvidia-cublas==13.*`` would pick the newest cuBLAS 13, made for a newer CUDA).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from email.parser import Parser
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from wheelforge.build.toolchains import install_wheels
from wheelforge.errors import InvalidInput

# Component name (the cuda-toolkit meta-package's extra) -> its wheel on PyPI, without
# the "-cu<major>" suffix CUDA 12 and older add. Only the component's own wheel is
# installed (--no-deps): cuBLAS's runtime dependency on NVRTC, for example, is not
# needed to compile and link against it.
_COMPONENT_PACKAGES: Mapping[str, str] = {
    "cccl": "nvidia-cuda-cccl",
    "cublas": "nvidia-cublas",
    "cudart": "nvidia-cuda-runtime",
    "cufft": "nvidia-cufft",
    "cufile": "nvidia-cufile",
    "cupti": "nvidia-cuda-cupti",
    "curand": "nvidia-curand",
    "cusolver": "nvidia-cusolver",
    "cusparse": "nvidia-cusparse",
    "npp": "nvidia-npp",
    "nvjitlink": "nvidia-nvjitlink",
    "nvjpeg": "nvidia-nvjpeg",
    "nvrtc": "nvidia-cuda-nvrtc",
    "nvtx": "nvidia-nvtx",
}

_CUDA_VERSION = re.compile(r"\d+(\.\d+)*")
# libcublas.so.13, libcufft.so.12.0.0.61 -> libcublas.so, libcufft.so
_VERSIONED_LIBRARY = re.compile(r"(lib.+\.so)(\.\d+)+")


def component_package(component: str, cuda_version: str) -> str:
    """The PyPI name of ``component``'s wheel for CUDA ``cuda_version``
    (``nvidia-cublas`` for 13.x, ``nvidia-cublas-cu12`` for 12.x)."""
    base = _COMPONENT_PACKAGES[component]
    major = int(cuda_version.split(".")[0])
    return base if major >= 13 else f"{base}-cu{major}"


def _check(components: Sequence[str], cuda_version: str) -> None:
    if not _CUDA_VERSION.fullmatch(cuda_version):
        raise InvalidInput(
            f"CUDA components: CUDA version {cuda_version!r} is not a version (expected e.g. 13.0)"
        )
    for component in components:
        if component not in _COMPONENT_PACKAGES:
            raise InvalidInput(
                f"unknown CUDA component {component!r}: expected one of "
                f"{', '.join(sorted(_COMPONENT_PACKAGES))}"
            )


def _last_line(result: subprocess.CompletedProcess[str]) -> str:
    return (result.stderr.strip().splitlines() or ["no output"])[-1]


def _pinned_requirements(
    components: Sequence[str], cuda_version: str, scratch: Path
) -> dict[str, str]:
    """``{component: "nvidia-x==A.B.C.*"}`` as the ``cuda-toolkit==<cuda_version>.*``
    meta-package pins them (one small download)."""
    meta = f"cuda-toolkit=={cuda_version}.*"
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--dest",
        str(scratch),
        meta,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(scratch.glob("cuda_toolkit-*.whl"))
    if result.returncode != 0 or not wheels:
        raise InvalidInput(
            f"CUDA components {', '.join(components)}: cannot find CUDA {cuda_version}'s "
            f"versions: pip download {meta} failed (exit code {result.returncode}: "
            f"{_last_line(result)})"
        )
    with zipfile.ZipFile(wheels[0]) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(name).decode("utf-8"))
    requirements: list[Requirement] = []
    for line in metadata.get_all("Requires-Dist") or []:
        try:
            requirements.append(Requirement(line))
        except InvalidRequirement:
            continue
    pinned: dict[str, str] = {}
    for component in components:
        package = canonicalize_name(component_package(component, cuda_version))
        match = next(
            (
                r
                for r in requirements
                if canonicalize_name(r.name) == package
                and (r.marker is None or r.marker.evaluate({"extra": component}))
            ),
            None,
        )
        if match is None:
            raise InvalidInput(
                f"CUDA component {component}: {wheels[0].name} has no {package} for this "
                f"platform (expected a Requires-Dist under its {component!r} extra)"
            )
        pinned[component] = f"{package}{match.specifier}"
    return pinned


def _link_unversioned(lib_dir: Path) -> None:
    """``libcublas.so -> libcublas.so.13``: CMake's find_library and ``-lcublas`` look
    for the unversioned name, which the wheels do not ship."""
    for path in sorted(lib_dir.iterdir(), key=lambda p: (len(p.name), p.name)):
        match = _VERSIONED_LIBRARY.fullmatch(path.name)
        if match is None:
            continue
        link = lib_dir / match.group(1)
        if not link.exists() and not link.is_symlink():
            link.symlink_to(path.name)


def _prefixes(root: Path) -> list[Path]:
    """The install prefixes in an installed component: ``nvidia/cu13`` (CUDA 13) or
    ``nvidia/<library>`` (CUDA 12), each with ``include/`` and/or ``lib/``."""
    nvidia = root / "nvidia"
    if not nvidia.is_dir():
        return []
    return [
        p
        for p in sorted(nvidia.iterdir())
        if p.is_dir() and ((p / "lib").is_dir() or (p / "include").is_dir())
    ]


def _install(
    component: str, requirement: str, target: Path, announce: Callable[[str], None]
) -> None:
    announce(f"fetching CUDA component {component} ({requirement}) from PyPI into {target}")

    def finish(staging: Path) -> None:
        prefixes = _prefixes(staging)
        if not prefixes:
            raise InvalidInput(
                f"CUDA component {component}: {requirement} installed no nvidia/<prefix>/lib "
                "or include directory (expected NVIDIA's wheel layout)"
            )
        for prefix in prefixes:
            if (prefix / "lib").is_dir():
                _link_unversioned(prefix / "lib")

    failure = install_wheels(target, [requirement], finish=finish)
    if failure is not None:
        raise InvalidInput(
            f"CUDA component {component}: pip install {requirement} failed ({failure})"
        )


def components_env(roots: Sequence[Path]) -> tuple[tuple[str, str], ...]:
    """The environment that makes builds find the components installed at ``roots``.

    - ``CMAKE_PREFIX_PATH``: FindCUDAToolkit's ``find_library(CUDA_cublas_LIBRARY …)``
      searches ``<prefix>/lib``, so ``CUDA::cublas`` (and ``CUDA::cublasLt``) exist;
    - ``CPATH``: the headers (``cublas_v2.h``). CMake's imported ``CUDA::cublas`` only
      carries the toolkit's include directory; gcc and nvcc read CPATH;
    - ``LIBRARY_PATH``: ``-lcublas`` on a plain compiler-driver link line (setup.py
      builds without CMake); CMake links by full path and does not need it.
    """
    prefixes = [p for root in roots for p in _prefixes(root)]
    include = [p / "include" for p in prefixes if (p / "include").is_dir()]
    lib = [p / "lib" for p in prefixes if (p / "lib").is_dir()]
    env = {
        "CMAKE_PREFIX_PATH": os.pathsep.join(str(p) for p in prefixes),
        "CPATH": os.pathsep.join(str(p) for p in include),
        "LIBRARY_PATH": os.pathsep.join(str(p) for p in lib),
    }
    return tuple(sorted((k, v) for k, v in env.items() if v))


def provision_cuda_components(
    components: Sequence[str],
    cuda_version: str,
    toolchains_dir: Path,
    announce: Callable[[str], None],
) -> tuple[tuple[str, str], ...]:
    """Install the wheels of CUDA library ``components`` (``cublas``, ``cufft``, …)
    matching CUDA ``cuda_version`` into
    ``toolchains_dir/cuda-components-<cuda_version>/<component>`` (once; later calls
    reuse them) and return the environment (sorted ``(name, value)`` pairs) that points
    CMake and the compilers at them. ``announce`` is told about each download.

    The values name only the components' directories: a caller that wants to keep an
    existing ``CPATH`` (say) prepends these to it.
    """
    _check(components, cuda_version)
    base = toolchains_dir / f"cuda-components-{cuda_version}"
    targets = {c: base / c for c in dict.fromkeys(components)}
    missing = [c for c, target in targets.items() if not target.is_dir()]
    if missing:
        base.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".meta.", dir=base) as scratch:
            pinned = _pinned_requirements(missing, cuda_version, Path(scratch))
        for component in missing:
            _install(component, pinned[component], targets[component], announce)
    return components_env(list(targets.values()))
