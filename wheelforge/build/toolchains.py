"""Finding the compilers a job needs, before any build starts."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from wheelforge.errors import InvalidInput
from wheelforge.matrix import Job
from wheelforge.paths import inside

_DEFAULT_CUDA_HOME = Path("/usr/local/cuda")


class ToolchainUnavailable(InvalidInput):
    """A job's toolchain is not on this machine and cannot be fetched; the message says
    how to install it (``build --skip-unavailable`` builds the other jobs)."""


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


def _nvcc_toolchain(nvcc: Path, version: str) -> Toolchain:
    cuda_home = nvcc.resolve().parent.parent
    env = (("CUDACXX", str(nvcc)), ("CUDA_HOME", str(cuda_home)))
    return Toolchain("nvcc", str(nvcc), version, env)


def _nvcc(job: Job, toolchains_dir: Path | None, announce: Callable[[str], None]) -> Toolchain:
    candidates = []
    if os.environ.get("CUDA_HOME"):
        candidates.append(Path(os.environ["CUDA_HOME"]) / "bin" / "nvcc")
    on_path = shutil.which("nvcc")
    if on_path:
        candidates.append(Path(on_path))
    candidates.append(_DEFAULT_CUDA_HOME / "bin" / "nvcc")
    found = next((c for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)
    wanted = job.toolchain_version
    provision = job.toolchain_source == "auto" and wanted is not None and toolchains_dir is not None
    version = _version([str(found), "--version"], r"release (\d+\.\d+)") if found else None
    if found is not None and version is not None and (not wanted or _matches(version, wanted)):
        return _nvcc_toolchain(found, version)
    if provision:
        assert wanted is not None and toolchains_dir is not None
        return _nvcc_toolchain(provision_cuda(job, wanted, toolchains_dir, announce), wanted)
    if found is None:
        raise ToolchainUnavailable(
            f"variant {job.id} needs nvcc: not found on PATH or in CUDA_HOME "
            "(install nvidia-cuda-nvcc or set CUDA_HOME)"
        )
    raise ToolchainUnavailable(
        f"variant {job.id} needs nvcc {wanted}: found {version} at {found} "
        f'(set CUDA_HOME to a CUDA {wanted} toolkit, or toolchain-source = "auto" '
        "to fetch it from PyPI)"
    )


# The PyPI packages that make a working CUDA 13 toolkit (TOOLCHAINS.md): nvcc, the
# runtime (libcudart_static.a), the CRT headers and cicc (nvvm).
_CUDA_PACKAGES = ("nvidia-cuda-nvcc", "nvidia-cuda-runtime", "nvidia-cuda-crt", "nvidia-nvvm")


def provision_cuda(
    job: Job, version: str, toolchains_dir: Path, announce: Callable[[str], None]
) -> Path:
    """A CUDA ``version`` toolkit from PyPI, installed once into ``toolchains_dir``;
    returns its nvcc."""
    major = version.split(".")[0]
    if not major.isdigit() or int(major) < 13:
        raise ToolchainUnavailable(
            f"variant {job.id} needs nvcc {version}: CUDA {major} cannot be fetched from PyPI "
            "(nvidia-cuda-nvcc-cu12 ships only ptxas); set CUDA_HOME to a CUDA toolkit"
        )
    target = inside(toolchains_dir, f"cuda-{version}", where=f"variant {job.id}: toolchain-version")
    nvcc = target / "nvidia" / f"cu{major}" / "bin" / "nvcc"
    if nvcc.is_file():
        return nvcc
    announce(f"fetching CUDA {version} (nvcc, runtime, crt, nvvm) from PyPI into {target}")
    failure = install_wheels(target, [f"{name}=={version}.*" for name in _CUDA_PACKAGES])
    if failure is not None:
        raise ToolchainUnavailable(
            f"variant {job.id} needs nvcc {version}: fetching CUDA {version} from PyPI failed "
            f"({failure})"
        )
    return nvcc


def install_wheels(
    target: Path,
    requirements: Sequence[str],
    *,
    finish: Callable[[Path], None] | None = None,
) -> str | None:
    """Install ``requirements`` (wheels only, no dependencies) into ``target``, whole or
    not at all: into a staging directory beside it, then ``finish(staging)`` (which may
    raise), then a rename (a concurrent install that got there first wins). Returns
    ``None``, or pip's exit code and last line when it failed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
               "--only-binary", ":all:", "--target", str(staging), *requirements]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            return f"pip exit code {result.returncode}: {last}"
        if finish is not None:
            finish(staging)
        with contextlib.suppress(OSError):  # another build provisioned it meanwhile
            staging.rename(target)
        return None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _hipcc(job: Job) -> Toolchain:
    found = shutil.which("hipcc")
    if found is None:
        raise ToolchainUnavailable(
            f"variant {job.id} needs hipcc: not found on PATH "
            "(on Debian: apt-get install hipcc libamdhip64-dev)"
        )
    env = {"HIP_PLATFORM": "amd"}
    version = _version([found, "--version"], r"HIP version: (\S+)")
    if job.toolchain_version and not _matches(version, job.toolchain_version):
        raise ToolchainUnavailable(
            f"variant {job.id} needs hipcc {job.toolchain_version}: found HIP {version} at {found}"
        )
    return Toolchain("hipcc", found, version, tuple(sorted(env.items())))


def _host() -> Toolchain:
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        raise ToolchainUnavailable(
            "the build needs a C++ compiler: none found (set CXX or install g++)"
        )
    return Toolchain("host", compiler, _version([compiler, "--version"], r"(\d+\.\d+\.\d+)"))


def _matches(version: str, wanted: str) -> bool:
    return version == wanted or version.startswith(wanted + ".")


def resolve_toolchain(
    job: Job,
    toolchains_dir: Path | None = None,
    announce: Callable[[str], None] = lambda message: None,
) -> Toolchain:
    """The toolchain of ``job``; with ``toolchain-source = "auto"``, a missing CUDA
    version is fetched into ``toolchains_dir`` (``announce`` says so)."""
    if job.toolchain == "nvcc":
        return _nvcc(job, toolchains_dir, announce)
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
