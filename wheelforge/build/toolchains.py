"""Finding the compilers a job needs, before any build starts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from wheelforge.errors import InvalidInput
from wheelforge.matrix import Job

_DEFAULT_CUDA_HOME = Path("/usr/local/cuda")


@dataclass(frozen=True)
class Toolchain:
    """A resolved toolchain: its version (part of the cache key) and the environment
    that points the build at it."""

    name: str
    path: str
    version: str
    env: tuple[tuple[str, str], ...] = ()


def _version(command: list[str], pattern: str) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except OSError:
        return "unknown"
    match = re.search(pattern, out.stdout + out.stderr)
    return match.group(1) if match else "unknown"


def _nvcc(job: Job) -> Toolchain:
    candidates = []
    if os.environ.get("CUDA_HOME"):
        candidates.append(Path(os.environ["CUDA_HOME"]) / "bin" / "nvcc")
    on_path = shutil.which("nvcc")
    if on_path:
        candidates.append(Path(on_path))
    candidates.append(_DEFAULT_CUDA_HOME / "bin" / "nvcc")
    found = next((c for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)
    if found is None:
        raise InvalidInput(
            f"variant {job.id} needs nvcc: not found on PATH or in CUDA_HOME "
            "(install nvidia-cuda-nvcc or set CUDA_HOME)"
        )
    version = _version([str(found), "--version"], r"release (\d+\.\d+)")
    if job.toolchain_version and not _matches(version, job.toolchain_version):
        wanted = job.toolchain_version
        raise InvalidInput(
            f"variant {job.id} needs nvcc {wanted}: found {version} at {found} "
            f"(set CUDA_HOME to a CUDA {wanted} toolkit)"
        )
    cuda_home = found.resolve().parent.parent
    return Toolchain(
        "nvcc", str(found), version, (("CUDACXX", str(found)), ("CUDA_HOME", str(cuda_home)))
    )


def _hipcc(job: Job) -> Toolchain:
    found = shutil.which("hipcc")
    if found is None:
        raise InvalidInput(
            f"variant {job.id} needs hipcc: not found on PATH "
            "(on Debian: apt-get install hipcc libamdhip64-dev)"
        )
    env = {"HIP_PLATFORM": "amd"}
    version = _version([found, "--version"], r"HIP version: (\S+)")
    if job.toolchain_version and not _matches(version, job.toolchain_version):
        raise InvalidInput(
            f"variant {job.id} needs hipcc {job.toolchain_version}: found HIP {version} at {found}"
        )
    return Toolchain("hipcc", found, version, tuple(sorted(env.items())))


def _host() -> Toolchain:
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        raise InvalidInput("the build needs a C++ compiler: none found (set CXX or install g++)")
    return Toolchain("host", compiler, _version([compiler, "--version"], r"(\d+\.\d+\.\d+)"))


def _matches(version: str, wanted: str) -> bool:
    return version == wanted or version.startswith(wanted + ".")


def resolve_toolchain(job: Job) -> Toolchain:
    if job.toolchain == "nvcc":
        return _nvcc(job)
    if job.toolchain == "hipcc":
        return _hipcc(job)
    return _host()


def resolve_python(job: Job) -> str:
    """The interpreter that builds ``job``: this one when its version matches."""
    current = f"{sys.version_info.major}.{sys.version_info.minor}"
    if _matches(current, job.python):
        return sys.executable
    found = shutil.which(f"python{job.python}")
    if found is None:
        raise InvalidInput(
            f"variant {job.id} needs Python {job.python}: python{job.python} not found on PATH"
        )
    return found
