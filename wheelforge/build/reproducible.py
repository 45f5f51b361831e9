"""Compiler flags that keep a job's directory and nvcc's temporary names out of its wheel.

Every job builds in its own directory (``WORK/jobs/ID/{src,build,tmp}``), so two clean
builds in different work directories see different absolute paths, and the compilers
write them into debug info and ``__FILE__`` strings. nvcc also compiles through
temporary files named ``tmpxft_<pid>_<counter>-N_<name>``, whose names land in the host
object (its ``STT_FILE`` symbol and DWARF), so even two builds in one directory differ.

What is set for every job, in front of the caller's own flags (later flags win, so a
project's or the job's ``-ffile-prefix-map`` still takes precedence):

- ``CFLAGS``, ``CXXFLAGS``, ``HIPFLAGS``: ``-ffile-prefix-map=JOBDIR=/wheelforge``
  (gcc >= 8, clang >= 10);
- ``CUDAFLAGS``: the same map through ``-Xcompiler=``, and ``-objtemp``
  (``--objdir-as-tempdir``: nvcc puts its intermediate files next to the object file,
  named after it, instead of ``tmpxft_…`` in ``$TMPDIR``), when this nvcc has it.

CMake reads these variables when a build directory is configured; setuptools reads
``CFLAGS``. A job directory whose path holds whitespace gets no map (the variables are
split at whitespace).
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Mapping
from pathlib import Path

MAPPED_PREFIX = "/wheelforge"
"""What the job directory's path becomes in compiled output."""

_HOST_VARIABLES = ("CFLAGS", "CXXFLAGS", "HIPFLAGS")


def prefix_maps(job_dir: Path) -> tuple[str, ...]:
    """``-ffile-prefix-map`` options for the job directory (its absolute and its resolved
    path, when they differ); none when the path holds whitespace."""
    paths = dict.fromkeys(str(p) for p in (job_dir.absolute(), job_dir.resolve()))
    if any(any(c.isspace() for c in path) for path in paths):
        return ()
    return tuple(f"-ffile-prefix-map={path}={MAPPED_PREFIX}" for path in paths)


def reproducible_flags(
    job_dir: Path, env: Mapping[str, str], *, nvcc_objtemp: bool = False
) -> dict[str, str]:
    """The flag variables to set for a job building in ``job_dir``, each ahead of the
    value ``env`` already has."""
    maps = prefix_maps(job_dir)
    cuda = [f"-Xcompiler={m}" for m in maps]
    if nvcc_objtemp:
        cuda.append("-objtemp")
    result: dict[str, str] = {}
    for name in _HOST_VARIABLES:
        if maps:
            result[name] = " ".join([*maps, env.get(name, "")]).strip()
    if cuda:
        result["CUDAFLAGS"] = " ".join([*cuda, env.get("CUDAFLAGS", "")]).strip()
    return result


@functools.cache
def nvcc_has_objtemp(nvcc: str) -> bool:
    """Whether ``nvcc --help`` lists ``--objdir-as-tempdir`` (``-objtemp``)."""
    try:
        result = subprocess.run(
            [nvcc, "--help"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0 and "--objdir-as-tempdir" in result.stdout
